"""One setup for both installers: colcon (ament_python, on a robot) and pip (`pip install -e kairo_features`)."""

from setuptools import setup

package_name = "kairo_features"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    package_data={package_name: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    python_requires=">=3.10",
    install_requires=["numpy>=1.24"],
    zip_safe=True,
    maintainer="kairo_ros maintainers",
    maintainer_email="maintainers@kairo.dev",
    description="The Kairo features contract: schema, task defaults, field reading and alignment (numpy only).",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
)
