"""Deployment (``python -m runtime.package``): a slim runtime folder for a device, and an AWS Lambda
zip with its handler (``lambda_function``) and the wheels for the target platform."""
