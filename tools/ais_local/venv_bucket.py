"""Create a bucket (container) in a local emulator with the provider's own client library.

Run by scripts/ais-local with the repo's .venv Python: `python venv_bucket.py s3|az ENDPOINT NAME`
(az: the account key in AZURE_STORAGE_KEY). An existing bucket is fine.
"""

import os
import sys


def s3(endpoint, name):
    import boto3
    from botocore.exceptions import ClientError

    cli = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="ais-local", aws_secret_access_key="ais-local")
    try:
        cli.create_bucket(Bucket=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def az(account_url, name):
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    account = account_url.rstrip("/").rsplit("/", 1)[1]
    key = os.environ["AZURE_STORAGE_KEY"]
    svc = BlobServiceClient(account_url=account_url, credential={"account_name": account, "account_key": key})
    try:
        svc.create_container(name)
    except ResourceExistsError:
        pass


if __name__ == "__main__":
    kind, endpoint, bucket = sys.argv[1:4]
    {"s3": s3, "az": az}[kind](endpoint, bucket)
