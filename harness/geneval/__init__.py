"""The GenEval evaluator: prompt suite, verdict rules, detector backends, colour classifier.

Importing this package is cheap: models are imported only by the backend that needs them.
"""
