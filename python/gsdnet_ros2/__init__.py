"""The daemon's ROS 2 side seen from a foreign DDS: CycloneDDS (PyPI `cyclonedds`, x86_64 wheel
only) playing a ROS 2 node on loopback, without a ROS installation.

Owns: msgs (the gsdnet_msgs, std_msgs/Header and diagnostic_msgs types under their DDS names),
dds (the loopback-only CycloneDDS configuration, ROS 2 topic names, the daemon's QoS), peer
(`python -m gsdnet_ros2.peer`: feeds the daemon a synthetic conversation over ROS 2 and collects
its emotions and notices) and listen (`python -m gsdnet_ros2.listen`: an example subscriber).
Importing a submodule needs cyclonedds; this package file does not.
"""
