"""lingbot_va_ros: ROS 2 controller for the LingBot-VA causal video-action world model.

The generated interfaces (``lingbot_va_ros.msg``, ``lingbot_va_ros.action``) may live in a different
folder on ``sys.path`` than this source package (the self-contained venv builds them into
site-packages while the code is installed in editable mode); extending ``__path__`` makes both
folders one package. In a colcon install they share one folder and this is a no-op.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
