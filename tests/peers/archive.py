"""The archive's readers for tests/export.rs.

  archive.py bucket ENDPOINT BUCKET         create an S3 bucket (boto3)
  archive.py download ENDPOINT BUCKET DIR   copy every object of BUCKET into DIR
  archive.py list ENDPOINT BUCKET           its keys, one JSON line each
  archive.py tamper ENDPOINT BUCKET KEY     flip the last byte of an object
  archive.py query DIR SQL                  run SQL in DuckDB with `events` the
                                            archive's Parquet files under DIR
                                            (Hive partitions node= and date=);
                                            prints the rows as JSON lines

DuckDB reads the files from a local directory: its S3 support (the httpfs
extension) is downloaded at run time, which this machine cannot."""
import json
import pathlib
import sys


def s3(endpoint):
    import boto3
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def main(cmd, *args):
    if cmd == "bucket":
        endpoint, bucket = args
        s3(endpoint).create_bucket(Bucket=bucket)
    elif cmd == "download":
        endpoint, bucket, out = args
        client = s3(endpoint)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                target = pathlib.Path(out) / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(target))
    elif cmd == "list":
        endpoint, bucket = args
        client = s3(endpoint)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                print(json.dumps({"key": obj["Key"], "size": obj["Size"]}))
    elif cmd == "tamper":
        endpoint, bucket, key = args
        client = s3(endpoint)
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[-1] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    elif cmd == "query":
        import duckdb
        root, sql = args
        con = duckdb.connect()
        files = f"{root}/**/*.parquet".replace("'", "''")
        con.execute(
            f"CREATE VIEW events AS SELECT * FROM read_parquet('{files}', hive_partitioning = true)"
        )
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            print(json.dumps(dict(zip(names, row)), default=str))
    else:
        sys.exit(f"unknown command {cmd}")


main(*sys.argv[1:])
