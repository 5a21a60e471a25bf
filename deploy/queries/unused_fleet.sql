-- Credentials unused on every host that holds them, in the window
-- [window_start, window_end]: no access and no usage of the credential on
-- any host in the window, and every host where it is known (named by any
-- record up to window_end, including the hosts' own `unused` findings) was
-- watched for the whole window: its `nhi.coverage` intervals cover at least
-- 99.9% of the window. "Not watched" is never "unused": such a credential
-- is `not_watched`, with the hosts that were not; one first seen after
-- window_start is `too_new` (as AWS IAM Access Analyzer judges only what
-- existed for the whole window). Losses in the window (events the kernel
-- could not hand over) are summed for the reviewer.
-- Parameters: window_start, window_end (DateTime64(9), UTC).
WITH
    known AS
    (
        SELECT
            LogAttributes['nhi.id'] AS nhi_id,
            ResourceAttributes['host.name'] AS host,
            any(LogAttributes['nhi.kind']) AS kind,
            min(Timestamp) AS first_known
        FROM otel_logs
        WHERE LogAttributes['nhi.id'] != ''
          AND EventName IN ('nhi.credential.access', 'nhi.credential.rotation', 'nhi.usage', 'nhi.finding')
          AND Timestamp <= {window_end:DateTime64(9)}
        GROUP BY nhi_id, host
    ),
    used AS
    (
        SELECT DISTINCT LogAttributes['nhi.id'] AS nhi_id
        FROM otel_logs
        WHERE EventName IN ('nhi.credential.access', 'nhi.usage')
          AND LogAttributes['nhi.id'] != ''
          AND if(EventName = 'nhi.usage', parseDateTime64BestEffortOrZero(LogAttributes['nhi.usage.last_seen'], 9), Timestamp)
              BETWEEN {window_start:DateTime64(9)} AND {window_end:DateTime64(9)}
    ),
    coverage AS
    (
        SELECT
            host,
            sum(greatest(0, dateDiff('millisecond', greatest(s, {window_start:DateTime64(9)}), least(e, {window_end:DateTime64(9)})))) AS covered_ms,
            sum(lost) AS events_lost
        FROM
        (
            -- An interval reported twice (a record delivered again) counts once.
            SELECT DISTINCT
                ResourceAttributes['host.name'] AS host,
                parseDateTime64BestEffortOrZero(LogAttributes['nhi.coverage.start'], 9) AS s,
                parseDateTime64BestEffortOrZero(LogAttributes['nhi.coverage.end'], 9) AS e,
                toUInt64OrZero(LogAttributes['nhi.coverage.events_lost']) AS lost
            FROM otel_logs
            WHERE EventName = 'nhi.coverage'
        )
        WHERE e > {window_start:DateTime64(9)} AND s < {window_end:DateTime64(9)}
        GROUP BY host
    )
SELECT
    k.nhi_id AS nhi_id,
    any(k.kind) AS kind,
    count() AS hosts_known,
    countIf(c.covered_ms >= 0.999 * dateDiff('millisecond', {window_start:DateTime64(9)}, {window_end:DateTime64(9)})) AS hosts_watched,
    arraySort(groupArrayIf(k.host, c.covered_ms < 0.999 * dateDiff('millisecond', {window_start:DateTime64(9)}, {window_end:DateTime64(9)}))) AS hosts_not_watched,
    sum(c.events_lost) AS events_lost,
    min(k.first_known) AS first_known,
    multiIf(first_known > {window_start:DateTime64(9)}, 'too_new', hosts_watched = hosts_known, 'unused', 'not_watched') AS verdict
FROM known AS k
LEFT JOIN coverage AS c ON c.host = k.host
WHERE k.nhi_id NOT IN (SELECT nhi_id FROM used)
GROUP BY k.nhi_id
ORDER BY verdict, nhi_id
SETTINGS join_use_nulls = 0
