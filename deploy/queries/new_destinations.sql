-- New destinations per credential: a server (server.address:port) that a
-- credential was linked to for the first time, fleet-wide, inside the
-- window (no host had linked it to that server before window_start). From
-- the `nhi.usage` records' `nhi.usage.destinations`; the first record
-- listing a destination is written at the usage flush after the link.
-- Parameters: window_start, window_end (DateTime64(9), UTC).
SELECT
    nhi_id,
    destination,
    min(seen) AS first_linked,
    argMin(host, seen) AS first_host,
    argMin(workload, seen) AS first_workload,
    uniqExact(host) AS hosts
FROM
(
    SELECT
        LogAttributes['nhi.id'] AS nhi_id,
        arrayJoin(JSONExtract(LogAttributes['nhi.usage.destinations'], 'Array(String)')) AS destination,
        Timestamp AS seen,
        ResourceAttributes['host.name'] AS host,
        multiIf(
            LogAttributes['nhi.k8s.service_account'] != '', concat('k8s:', LogAttributes['nhi.k8s.service_account']),
            LogAttributes['container.id'] != '', concat('container:', LogAttributes['container.id']),
            LogAttributes['nhi.systemd.unit'] != '', concat('unit:', LogAttributes['nhi.systemd.unit'], ' ', LogAttributes['process.executable.path']),
            concat('exe:', LogAttributes['process.executable.path'], ' uid:', LogAttributes['process.user.id'])) AS workload
    FROM otel_logs
    WHERE EventName = 'nhi.usage' AND LogAttributes['nhi.id'] != '' AND LogAttributes['nhi.usage.destinations'] != ''
)
WHERE seen <= {window_end:DateTime64(9)}
GROUP BY nhi_id, destination
HAVING first_linked >= {window_start:DateTime64(9)}
ORDER BY nhi_id, first_linked, destination
