"""Training of the learned change detector (``make train``); needs the ``train`` extra (torch).

Nothing here is imported at run time: detection uses the exported ONNX model through onnxruntime
(:mod:`sitewatch.detectors.learned`).  Run ``python -m sitewatch.train --help``.

* :mod:`sitewatch.train.net`: the Siamese U-Net (FC-Siam-diff style) and its ONNX export.
* :mod:`sitewatch.train.oscd`: the OSCD cities as network inputs (the detector's own preprocessing).
* :mod:`sitewatch.train.fit`: seeded, bounded training, leave-one-city-out folds and the final model.
"""
