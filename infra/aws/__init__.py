"""The AWS target: region, zone, partition and database faults on the user's own estate.

`config` validates the platform file's `aws` sections; `driver` is the seam behind
`infra/actions.py` (`gameday_platform: aws`) and dispatches to `kill` (region or zone),
`network` (blackhole ACL, partition) and `database` (Aurora failover), which share a
`session` and record what they changed in `state`; `actions` holds the AWS-only
activities (one availability zone, the database failover).
"""
