-- Session duration (p50, p99) and completion rate per category, last 24 hours.
SELECT content_category,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY session_duration_sec) AS p50_sec,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY session_duration_sec) AS p99_sec,
       round(avg(CASE WHEN completed THEN 1.0 ELSE 0.0 END), 3) AS completion_rate
FROM plays
WHERE event_time >= now() - interval '24 hours'
GROUP BY 1
ORDER BY 1
