"""Default topic, action and service names (the project's stable ROS API; see docs/interfaces.md).

Every name is relative to the node's namespace only through these constants; users remap them.
"""
NAMESPACE = "/lingbot_va"

OBSERVATION = f"{NAMESPACE}/observation"            # lingbot_va_ros/Observation
ACTION_CHUNK = f"{NAMESPACE}/action_chunk"          # lingbot_va_ros/ActionChunk
ACTION_TICK = f"{NAMESPACE}/action_tick"            # lingbot_va_ros/ActionTick
EXECUTED_ACTIONS = f"{NAMESPACE}/executed_actions"  # lingbot_va_ros/ExecutedActions
COMMAND = f"{NAMESPACE}/command"                    # sensor_msgs/JointState, one per control tick
PREDICTED_FRAMES = f"{NAMESPACE}/predicted_frames"  # sensor_msgs/Image, real | predicted per camera
PREDICTED_TRAJECTORY = f"{NAMESPACE}/predicted_trajectory"  # trajectory_msgs/JointTrajectory
PREDICTED_LATENTS = f"{NAMESPACE}/predicted_latents"  # lingbot_va_ros/PredictedLatents, one per chunk (fp16)
PREDICTED_FRAMES_COMPRESSED = f"{PREDICTED_FRAMES}/compressed"      # sensor_msgs/CompressedImage (JPEG)
PREDICTED_FRAMES_INFO = f"{PREDICTED_FRAMES}_info"                 # lingbot_va_ros/PredictedFrameInfo
PREDICTION_VS_REAL = f"{NAMESPACE}/prediction_vs_real"  # sensor_msgs/Image, predicted key frame k | real k
PREDICTION_VS_REAL_COMPRESSED = f"{PREDICTION_VS_REAL}/compressed"  # sensor_msgs/CompressedImage (JPEG)
PREDICTION_VS_REAL_INFO = f"{PREDICTION_VS_REAL}_info"             # lingbot_va_ros/PredictedFrameInfo
PREDICTION_ERROR = f"{NAMESPACE}/prediction_error"  # lingbot_va_ros/PredictionError, one per grounded chunk
E_STOP = f"{NAMESPACE}/e_stop"                      # std_msgs/Bool (true latches a controlled stop)
REARM = f"{NAMESPACE}/rearm"                        # std_srvs/Trigger (clears a latched stop)
EXECUTOR_STATE = f"{NAMESPACE}/executor_state"      # std_msgs/String (json status of the executor)
HEARTBEAT = f"{NAMESPACE}/heartbeat"                  # std_msgs/Header at >=10 Hz from the inference process (frame_id = episode id)
RUN_EPISODE = f"{NAMESPACE}/run_episode"            # lingbot_va_ros/action/RunEpisode
JOINT_STATES = "/joint_states"                      # sensor_msgs/JointState (robot state)
DIAGNOSTICS = "/diagnostics"                        # diagnostic_msgs/DiagnosticArray
