from glob import glob

from setuptools import find_packages, setup

package_name = "kairo_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="kairo_ros maintainers",
    maintainer_email="maintainers@kairo.dev",
    description="ROS 2 nodes for the Kairo Models API.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "kairo_manager = kairo_ros.manager.main:main",
            "kairo_inference = kairo_ros.inference.main:main",
            "kairo_sim_arm = kairo_ros.demo.sim_arm:main",
            "kairo_demo = kairo_ros.demo.run:main",
        ],
    },
)
