-- Views per minute by country and device over the last hour.
SELECT date_trunc('minute', event_time) AS minute, country, device_type, count(*) AS views
FROM plays
WHERE event_type = 'play'
  AND event_time >= now() - interval '1 hour'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
