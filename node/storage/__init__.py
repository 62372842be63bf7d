"""Where instance files live: a folder or an S3 bucket, the local read cache of a bucket, and the
check that index and storage agree."""
