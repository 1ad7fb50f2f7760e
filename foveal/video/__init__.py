"""Video and frame-stream prediction: reading and writing videos (PyAV), multi-object tracking
(ByteTrack-style), CLEAR-MOT metrics and a synthetic moving-shapes video with known identities.

Modules import PyAV inside their functions, so ``import foveal`` stays fast. Boxes are xyxy absolute
pixels of the frame, as everywhere in foveal.
"""
