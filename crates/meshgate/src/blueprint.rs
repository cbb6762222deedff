//! The product blueprint (`meshgate product init <domain>.<name>`): the files a new data
//! product needs in a mesh directory, with safe defaults, so that every product starts the
//! same way: a contract with the fields the mesh requires, a policy that lets nobody read
//! until its owner says who, the bucket and read-only key its lake needs, and a CI job that
//! tests every change of its decisions.
//!
//! The files are returned, not written: the CLI writes them (and refuses to overwrite), tests
//! load them.

/// One file of the blueprint: its path inside the mesh directory and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueprintFile {
    pub path: String,
    pub text: String,
}

/// What `product init` is told; everything else is a placeholder the owner replaces.
#[derive(Debug, Clone)]
pub struct Blueprint {
    /// `<domain>.<name>`.
    pub product: String,
    /// The owning team (default: `<domain>-data`).
    pub team: Option<String>,
    /// Where consumers ask for help (default: `#<domain>-data`).
    pub support_channel: Option<String>,
}

/// Why a product id cannot be a product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a product id: use `<domain>.<name>`, each part lowercase letters, digits and \
     `_` starting with a letter (for example `payments.refunds`)"
)]
pub struct BadProductId(pub String);

fn is_part(part: &str) -> bool {
    part.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Blueprint {
    /// The files of the blueprint, paths relative to the mesh directory.
    pub fn files(&self) -> Result<Vec<BlueprintFile>, BadProductId> {
        let (domain, name) = self
            .product
            .split_once('.')
            .filter(|(d, n)| is_part(d) && is_part(n))
            .ok_or_else(|| BadProductId(self.product.clone()))?;
        let product = &self.product;
        let team = self
            .team
            .clone()
            .unwrap_or_else(|| format!("{domain}-data"));
        let channel = self
            .support_channel
            .clone()
            .unwrap_or_else(|| format!("#{domain}-data"));
        let bucket = format!("{domain}-{name}").replace('_', "-");
        let table = name;
        let file = |path: String, text: String| BlueprintFile { path, text };
        Ok(vec![
            file(
                format!("products/{product}.yaml"),
                contract(product, domain, table, &team, &channel, &bucket),
            ),
            file(
                format!("policies/products/{product}.toml"),
                policy(product, table, &team),
            ),
            file(
                format!("lakes/{product}/bucket-policy.json"),
                bucket_policy(&bucket),
            ),
            file(format!("lakes/{product}/minio.sh"), minio(&bucket, product)),
            file(format!(".ci/products/{product}.yml"), ci(product)),
        ])
    }
}

fn contract(
    product: &str,
    domain: &str,
    table: &str,
    team: &str,
    channel: &str,
    bucket: &str,
) -> String {
    format!(
        r#"# The contract of {product} (ODCS v3.1.0), written by `meshgate product init`.
# Every column carries a classification (public, internal, confidential, restricted) or tags
# (pii, pci, ...): an unclassified column counts as sensitive and is hidden from every reader.
# Replace the example columns with the product's own; a breaking change is a new major version.
apiVersion: v3.1.0
kind: DataContract
id: {product}
name: {product}
version: 0.1.0
status: draft
domain: {domain}
dataProduct: {product}
description:
  purpose: What this product is for, and who should use it.
  usage: How to join or filter it.
  limitations: What it does not contain.
tags: [{domain}]
servers:
  - server: product-lake
    type: s3
    location: s3://{bucket}/data/{{model}}/
    format: parquet
schema:
  - name: {table}
    physicalType: table
    description: One row per ...
    properties:
      - name: id
        logicalType: integer
        physicalType: BIGINT
        required: true
        primaryKey: true
        primaryKeyPosition: 1
        classification: internal
        description: The row's identifier.
      - name: customer_email
        logicalType: string
        physicalType: VARCHAR
        tags: [pii]
        description: An example of personal data (hidden until the policy treats it).
      - name: updated_at
        logicalType: timestamp
        physicalType: TIMESTAMP
        required: true
        classification: internal
        description: When the row last changed.
slaProperties:
  - property: latency
    value: 1
    unit: d
  - property: frequency
    value: 1
    unit: d
  - property: retention
    value: 1
    unit: y
team:
  name: {team}
  members:
    - username: replace-with-the-owner
      role: owner
support:
  - channel: "{channel}"
    tool: slack
"#
    )
}

fn policy(product: &str, table: &str, team: &str) -> String {
    format!(
        r#"# Who may read {product}, and what they see. Owner: team {team}.
#
# Safe defaults from `meshgate product init`: no row filter grants rows, so nobody may read
# the product yet. A column no rule here names follows the mesh's global rules
# (policies/global.toml; in the reference mesh, personal data is tokenized outside its
# domain), and where none applies, it is clear when classified public or internal and hidden
# otherwise. `meshgate lint` lists each column left that way. To open the product, give
# readers rows and treat the personal data, for example:
#
#   [[row_filter]]
#   id = "readers-see-all-rows"
#   table = "{table}"
#   kind = "grant"
#   to = ["role:{table}-readers"]
#   where = "true"
#
#   [[column]]
#   id = "email-masked"
#   table = "{table}"
#   column = "customer_email"
#   treatment = "mask(email)"
#   to = ["*"]
#
# and let the role in with a line of policies/access.csv. Then write down what each caller
# sees (`meshgate policy test . --write`, review, commit) and let CI diff every change.

[policy]
product = "{product}"
version = 1
description = "{product}: nobody reads it until its owner publishes readers."
"#
    )
}

fn bucket_policy(bucket: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{
      "Sid": "MeshgateReadsTheProductInPlace",
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
      "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]
    }}
  ]
}}
"#
    )
}

fn minio(bucket: &str, product: &str) -> String {
    format!(
        r#"#!/bin/sh
# The lake of {product} on MinIO (`mc` with an alias `mesh` for the server): its own bucket,
# and a key that can only read it, for the gateway's [storage.products."{product}"].
# Run once as the server's administrator; keep the printed secret in your secret store.
set -eu
mc mb --ignore-existing "mesh/{bucket}"
mc admin policy create mesh "{bucket}-read" "$(dirname "$0")/bucket-policy.json"
secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mc admin user add mesh "{bucket}-reader" "$secret"
mc admin policy attach mesh "{bucket}-read" --user "{bucket}-reader"
echo "access key: {bucket}-reader"
echo "secret key: $secret"
"#
    )
}

fn ci(product: &str) -> String {
    format!(
        r#"# CI for {product} (GitHub Actions syntax; the steps are plain commands for any CI).
# Every change of the mesh directory: it lints clean (global rules, names, required fields,
# a breaking change only with a new major version), the decisions hold as written, and a
# change that widens access fails unless a reviewer approves it.
name: {product} policy
on:
  pull_request:
    paths: ["products/{product}.yaml", "policies/**"]
jobs:
  policy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: the mesh before the change
        run: git worktree add /tmp/base "origin/${{{{ github.base_ref }}}}"
      - name: contracts and policies against the global rules and each other
        run: meshgate lint . --strict --base /tmp/base
      - name: the decisions hold
        run: meshgate policy test .
      - name: does it widen access?
        run: meshgate policy diff /tmp/base . --format markdown | tee policy-diff.md
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_id_is_domain_dot_name() {
        for bad in [
            "payments",
            "Payments.refunds",
            "payments.",
            ".x",
            "a.b.c",
            "a-b.c",
            "1a.b",
        ] {
            let blueprint = Blueprint {
                product: bad.into(),
                team: None,
                support_channel: None,
            };
            assert!(blueprint.files().is_err(), "{bad}");
        }
        let blueprint = Blueprint {
            product: "payments.refunds_v2".into(),
            team: None,
            support_channel: None,
        };
        let files = blueprint.files().unwrap();
        assert!(files.iter().any(|f| {
            f.path == "products/payments.refunds_v2.yaml"
                && f.text
                    .contains("location: s3://payments-refunds-v2/data/{model}/")
        }));
    }
}
