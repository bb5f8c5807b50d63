-- Daily active users over 90 days, exact and HyperLogLog.
SELECT date_trunc('day', event_time) AS day,
       count(DISTINCT user_id) AS dau,
       approx_count_distinct(user_id) AS dau_approx
FROM plays
WHERE event_time >= now() - interval '90 days'
GROUP BY 1
ORDER BY 1
