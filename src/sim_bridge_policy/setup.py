from setuptools import find_packages, setup

PACKAGE = "sim_bridge_policy"

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
    description="sim_bridge policy node (PPO training, evaluation, deployment), deploy-path evaluator, "
    "excitation and system identification.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy = sim_bridge_policy.policy_node:main",
            "evaluator = sim_bridge_policy.evaluator_node:main",
            "excite = sim_bridge_policy.exciter_node:main",
            "sysid = sim_bridge_policy.sysid_node:main",
        ],
    },
)
