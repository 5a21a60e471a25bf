-- Sprawl: one credential (nhi.id) used on many hosts or by many workloads
-- in the window. Parameters:
--   window_start, window_end (DateTime64(9), UTC), min_hosts, min_workloads (UInt32)
--   clickhouse-client --database otel --param_window_start='2026-12-01 00:00:00' \
--     --param_window_end='2026-12-02 00:00:00' --param_min_hosts=2 --param_min_workloads=2 \
--     --queries-file deploy/queries/sprawl.sql
SELECT
    nhi_id,
    any(kind) AS kind,
    uniqExact(host) AS hosts,
    uniqExact(workload) AS workloads,
    arraySort(groupUniqArray(host)) AS host_list,
    arraySort(groupUniqArray(workload)) AS workload_list,
    min(use_time) AS first_use,
    max(use_time) AS last_use
FROM
(
    SELECT
        LogAttributes['nhi.id'] AS nhi_id,
        LogAttributes['nhi.kind'] AS kind,
        ResourceAttributes['host.name'] AS host,
        if(EventName = 'nhi.usage', parseDateTime64BestEffortOrZero(LogAttributes['nhi.usage.last_seen'], 9), Timestamp) AS use_time,
        multiIf(
            LogAttributes['nhi.k8s.service_account'] != '', concat('k8s:', LogAttributes['nhi.k8s.service_account']),
            LogAttributes['container.id'] != '', concat('container:', LogAttributes['container.id']),
            LogAttributes['nhi.systemd.unit'] != '', concat('unit:', LogAttributes['nhi.systemd.unit'], ' ', LogAttributes['process.executable.path']),
            concat('exe:', LogAttributes['process.executable.path'], ' uid:', LogAttributes['process.user.id'])) AS workload
    FROM otel_logs
    WHERE EventName IN ('nhi.credential.access', 'nhi.usage') AND LogAttributes['nhi.id'] != ''
)
WHERE use_time >= {window_start:DateTime64(9)} AND use_time <= {window_end:DateTime64(9)}
GROUP BY nhi_id
HAVING hosts >= {min_hosts:UInt32} OR workloads >= {min_workloads:UInt32}
ORDER BY hosts DESC, workloads DESC, nhi_id
