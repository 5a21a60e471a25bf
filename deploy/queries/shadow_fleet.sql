-- Shadow credentials across the fleet: credentials in use that no
-- inventory declares, from the hosts' `nhi.finding` records of type
-- `shadow` (one record when a finding opens, one when it changes state:
-- the latest per host and finding id is its state). Lists, per credential,
-- every host and workload with an open shadow finding. Parameters: none.
SELECT
    nhi_id,
    any(kind) AS kind,
    uniqExact(host) AS hosts,
    arraySort(groupUniqArray(host)) AS host_list,
    arraySort(groupUniqArray(workload)) AS workloads,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sum(uses) AS uses,
    max(severity) AS max_severity
FROM
(
    SELECT
        ResourceAttributes['host.name'] AS host,
        LogAttributes['nhi.finding.id'] AS finding_id,
        argMax(LogAttributes, Timestamp) AS a,
        a['nhi.id'] AS nhi_id,
        a['nhi.kind'] AS kind,
        a['nhi.finding.state'] AS state,
        parseDateTime64BestEffortOrZero(a['nhi.finding.first_seen'], 9) AS first_seen,
        parseDateTime64BestEffortOrZero(a['nhi.finding.last_seen'], 9) AS last_seen,
        toUInt64OrZero(a['nhi.finding.count']) AS uses,
        -- info < low < medium < high
        indexOf(['info', 'low', 'medium', 'high'], a['nhi.finding.severity']) AS severity,
        multiIf(
            a['nhi.k8s.service_account'] != '', concat('k8s:', a['nhi.k8s.service_account']),
            a['container.id'] != '', concat('container:', a['container.id']),
            a['nhi.systemd.unit'] != '', concat('unit:', a['nhi.systemd.unit'], ' ', a['process.executable.path']),
            concat('exe:', a['process.executable.path'], ' uid:', a['process.user.id'])) AS workload
    FROM otel_logs
    WHERE EventName = 'nhi.finding' AND LogAttributes['nhi.finding.type'] = 'shadow'
    GROUP BY host, finding_id
)
WHERE state = 'open'
GROUP BY nhi_id
ORDER BY hosts DESC, nhi_id
