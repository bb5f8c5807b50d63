-- The live feed: the latest 20 ratings.
SELECT event_time, order_id, stars
FROM ratings
WHERE restaurant_id = $1
  AND event_time >= now() - interval '30 days'
ORDER BY event_time DESC, order_id
LIMIT 20
