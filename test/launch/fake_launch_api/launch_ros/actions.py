class Node:
    _KNOWN = {"package", "executable", "name", "namespace", "parameters", "remappings", "respawn", "respawn_delay",
              "output", "ros_arguments", "arguments", "condition", "emulate_tty"}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - self._KNOWN
        if unknown:
            raise TypeError(f"launch_ros.actions.Node got unexpected arguments {sorted(unknown)}")
        self.kwargs = kwargs
