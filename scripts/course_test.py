"""The course's test.py: POST a URL event to the Lambda emulator path and print the answer.

Works against `docker run -p 8080:8080` of Dockerfile.lambda and against `python -m runtime.serve`.
"""

import sys

import requests

url = "http://localhost:8080/2015-03-31/functions/function/invocations"
data = {"url": sys.argv[1] if len(sys.argv) > 1 else "http://bit.ly/mlbookcamp-pants"}
result = requests.post(url, json=data, timeout=30).json()
print(result)
