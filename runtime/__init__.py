"""The TF-free runtime: preprocessing, the bundle contract, the format table and its backends, the cascade,
the classifier and the CLIs (predict, compare); the server, deployment and URL fetching live in subpackages."""
