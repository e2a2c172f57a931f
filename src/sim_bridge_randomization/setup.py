from setuptools import find_packages, setup

PACKAGE = "sim_bridge_randomization"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="sim_bridge domain-randomization node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["randomization = sim_bridge_randomization.randomization_node:main"],
    },
)
