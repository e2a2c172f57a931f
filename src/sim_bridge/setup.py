from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sim_bridge"


def share_tree(folder):
    """data_files entries installing ``folder`` under share/sim_bridge, subfolders kept."""
    entries = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            entries.setdefault(str(Path("share", PACKAGE, path.parent)), []).append(str(path))
    return list(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="sim_bridge bringup: launch files, configs and the bringup runner.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["bringup = sim_bridge.bringup:main"],
    },
)
