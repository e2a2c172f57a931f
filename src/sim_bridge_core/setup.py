from setuptools import find_packages, setup

PACKAGE = "sim_bridge_core"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={"sim_bridge_core.models": ["assets/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="ROS-free core of sim_bridge: models, batched MuJoCo backends, tasks, wire encoding.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [],
    },
)
