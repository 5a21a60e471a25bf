-- Last use of each credential on each host, and by which workload.
-- A use is an `nhi.credential.access` record (its time) or an `nhi.usage`
-- record (its `nhi.usage.last_seen`). Parameters: none.
--   clickhouse-client --database otel --queries-file deploy/queries/last_use_per_host.sql
SELECT
    nhi_id,
    any(kind) AS kind,
    host,
    max(use_time) AS last_use,
    argMax(workload, use_time) AS last_workload,
    uniqExact(workload) AS workloads,
    count() AS records
FROM
(
    SELECT
        LogAttributes['nhi.id'] AS nhi_id,
        LogAttributes['nhi.kind'] AS kind,
        ResourceAttributes['host.name'] AS host,
        if(EventName = 'nhi.usage', parseDateTime64BestEffortOrZero(LogAttributes['nhi.usage.last_seen'], 9), Timestamp) AS use_time,
        -- The workload: Kubernetes service account, container, systemd unit, else executable and user.
        multiIf(
            LogAttributes['nhi.k8s.service_account'] != '', concat('k8s:', LogAttributes['nhi.k8s.service_account']),
            LogAttributes['container.id'] != '', concat('container:', LogAttributes['container.id']),
            LogAttributes['nhi.systemd.unit'] != '', concat('unit:', LogAttributes['nhi.systemd.unit'], ' ', LogAttributes['process.executable.path']),
            concat('exe:', LogAttributes['process.executable.path'], ' uid:', LogAttributes['process.user.id'])) AS workload
    FROM otel_logs
    WHERE EventName IN ('nhi.credential.access', 'nhi.usage') AND LogAttributes['nhi.id'] != ''
)
GROUP BY nhi_id, host
ORDER BY nhi_id, host
