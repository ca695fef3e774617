-- Which features drive the anomalies: per monitor, partition and feature, how many anomalies list the
-- feature among their top contributions (tw_anomalies.contributions, a JSON list of
-- {"feature", "share", "value"}) and its mean share of their scores (0 to 1) over those anomalies.
-- Contributions that are not a JSON list (tablewatch writes none) are skipped rather than failing the view.
CREATE VIEW tw_v_top_features AS
SELECT a.monitor,
       a.partition_date,
       c.item ->> 'feature' AS feature,
       COUNT(*) AS anomalies,
       AVG((c.item ->> 'share')::double precision) AS mean_share
FROM tw_anomalies a
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(a.contributions) = 'array' THEN a.contributions ELSE '[]'::jsonb END
) AS c(item)
WHERE jsonb_typeof(c.item) = 'object' AND c.item ->> 'feature' IS NOT NULL
GROUP BY a.monitor, a.partition_date, c.item ->> 'feature';
