"""The AWS target: region, zone and database faults on the user's own AWS estate.

`config` validates the platform file's `aws` sections, `driver` applies and reverts the
faults behind `infra/actions.py` (`gameday_platform: aws`), `actions` holds the
AWS-only activities (one availability zone, the database failover).
"""
