"""Import-time stand-in for ``composition_interfaces.srv``, a ROS message package with no PyPI wheel.

``launch_ros.actions`` imports it for ``LoadComposableNodes``, which sim_bridge's launch files
never use. The tests put this folder on the ``PYTHONPATH`` of the ``ros2`` processes they start
when the real package is missing (conftest.py); it is never installed for users.
"""


class LoadNode:
    """The names launch_ros reads at import time; loading a composable node fails with the reason."""

    class Request:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise NotImplementedError("a test stand-in: composable nodes need a ROS 2 install")

    Response = Request
