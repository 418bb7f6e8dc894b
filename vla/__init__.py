"""The wire contract shared by the inference server and the robot agent.

``vla.v1`` holds the code generated from ``proto/vla/v1/policy.proto``; ``vla.codec`` turns numpy
arrays and images into those messages and back. Both sides import this small package and never
each other.
"""
