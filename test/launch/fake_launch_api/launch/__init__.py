class LaunchDescription:
    def __init__(self, entities=None):
        self.entities = list(entities or [])


class LaunchContext:
    def __init__(self, launch_configurations=None):
        self.launch_configurations = dict(launch_configurations or {})
