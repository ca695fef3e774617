-- Which features drive the anomalies: per monitor, partition and feature, how many anomalies list the
-- feature among their top contributions (tw_anomalies.contributions, a JSON list of
-- {"feature", "share", "value"}) and its mean share of their scores (0 to 1) over those anomalies.
-- Contributions that are not a JSON list (tablewatch writes none) are skipped rather than failing the view.
CREATE VIEW tw_v_top_features AS
SELECT a.monitor,
       a.partition_date,
       json_extract(c.value, '$.feature') AS feature,
       COUNT(*) AS anomalies,
       AVG(json_extract(c.value, '$.share')) AS mean_share
FROM tw_anomalies a,
     json_each(
         CASE WHEN json_valid(a.contributions)
              THEN CASE WHEN json_type(a.contributions) = 'array' THEN a.contributions ELSE '[]' END
              ELSE '[]'
         END
     ) AS c
WHERE c.type = 'object' AND json_extract(c.value, '$.feature') IS NOT NULL
GROUP BY a.monitor, a.partition_date, json_extract(c.value, '$.feature');
