"""Video and frame-stream prediction: multi-object tracking (ByteTrack-style), line counting, CLEAR-MOT
metrics and ``foveal.predict_video``. Reading and writing videos (PyAV) and the synthetic
moving-shapes video live with the data tools (``foveal.data.video_io``, ``foveal.data.synth_video``).

Boxes are xyxy absolute pixels of the frame, as everywhere in foveal.
"""
