#!/bin/sh
# One-shot MinIO setup for the reference mesh (run by docker-compose's lake-setup service):
# one bucket per product, one read-only user and policy per bucket (the gateway's keys),
# and one uploading user that may write the three buckets (the seed service's key).
#
# Reads: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, MESHGATE_BUCKETS (space separated),
# MESHGATE_S3_<PRODUCT>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY for each bucket (the product id
# in upper snake case, which is also the bucket's: reference-counterparties ->
# REFERENCE_COUNTERPARTIES), MESHGATE_SEED_ACCESS_KEY_ID / _SECRET_ACCESS_KEY.
set -eu

mc alias set lake http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

resources=""
for bucket in $MESHGATE_BUCKETS; do
    mc mb --ignore-existing "lake/$bucket"
    name=$(echo "$bucket" | tr 'a-z-' 'A-Z_')
    key=$(eval echo "\$MESHGATE_S3_${name}_ACCESS_KEY_ID")
    secret=$(eval echo "\$MESHGATE_S3_${name}_SECRET_ACCESS_KEY")
    cat > "/tmp/read-$bucket.json" <<POLICY
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
  "Resource": ["arn:aws:s3:::$bucket", "arn:aws:s3:::$bucket/*"]}]}
POLICY
    mc admin policy create lake "read-$bucket" "/tmp/read-$bucket.json"
    mc admin user add lake "$key" "$secret"
    mc admin policy attach lake "read-$bucket" --user "$key" || true
    resources="$resources\"arn:aws:s3:::$bucket\", \"arn:aws:s3:::$bucket/*\", "
done

cat > /tmp/seed.json <<POLICY
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
  "Resource": [${resources%, }]}]}
POLICY
mc admin policy create lake seed-reference /tmp/seed.json
mc admin user add lake "$MESHGATE_SEED_ACCESS_KEY_ID" "$MESHGATE_SEED_SECRET_ACCESS_KEY"
mc admin policy attach lake seed-reference --user "$MESHGATE_SEED_ACCESS_KEY_ID" || true
echo "lake ready: $MESHGATE_BUCKETS"
