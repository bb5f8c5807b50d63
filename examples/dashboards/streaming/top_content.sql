-- Top 10 titles by plays in the last 24 hours.
SELECT content_id, content_category, count(*) AS plays
FROM plays
WHERE event_type = 'play'
  AND event_time >= now() - interval '24 hours'
GROUP BY 1, 2
ORDER BY plays DESC, content_id
LIMIT 10
