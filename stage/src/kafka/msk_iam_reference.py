# The reference tokens of msk_iam.rs's test: python3 msk_iam_reference.py (pip install botocore).
# Reference MSK IAM token, made as aws-msk-iam-sasl-signer-python 1.0.2 makes it
# (__construct_auth_token), with botocore's clock fixed.
import base64, datetime
import botocore.auth
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

class Fixed(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return datetime.datetime(2026, 12, 5, 6, 30, 0)
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime(2026, 12, 5, 6, 30, 0, tzinfo=tz)
botocore.auth.datetime.datetime = Fixed

for token in [None, "FwoGZXIvYXdzEXAMPLETOKEN"]:
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token)
    sig = SigV4QueryAuth(creds, "kafka-cluster", "eu-west-1", expires=900)
    req = AWSRequest(method="GET", url="https://kafka.eu-west-1.amazonaws.com/", params={"Action": "kafka-cluster:Connect"})
    sig.add_auth(req)
    req.params = {"User-Agent": "exposures/0.1.0"}
    url = req.prepare().url
    print(url)
    print(base64.urlsafe_b64encode(url.encode()).decode().rstrip("="))
