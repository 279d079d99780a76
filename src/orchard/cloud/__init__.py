"""orchard on AWS: S3 (bucket, uploads), IAM (roles), EMR (cluster, steps), through boto3.

- api: `Request` (one API call as data) and `Aws` (sends it, or records it for --dry-run);
- layout: the names every command derives from the bucket;
- s3, iam, emr: one builder per request, and the flows of `orchard aws ...`;
- artifacts: orchard's wheel, the bootstrap script, the step's entry script.
"""
