-- The two dashboards' tables, as `sluice demo` creates them (it points
-- kafka_brokers at its own broker). Run against your Kafka by changing
-- 'localhost:9092'; for tables filled by `sluice import` instead, drop the
-- first line of each WITH (the Kafka source).

-- One row per order: each status change is a partial message (only the
-- fields that change), merged into the order's row by order_id; a message
-- older than the row's newest (by event_time) is dropped.
CREATE TABLE orders (
  order_id TEXT PRIMARY KEY,
  restaurant_id BIGINT,
  customer_id BIGINT,
  status TEXT,
  subtotal NUMERIC(12, 2),
  courier_id BIGINT,
  created_at TIMESTAMP,
  confirmed_at TIMESTAMP,
  ready_at TIMESTAMP,
  courier_arrived_at TIMESTAMP,
  picked_up_at TIMESTAMP,
  delivered_at TIMESTAMP,
  event_time TIMESTAMP
) WITH (kafka_brokers = 'localhost:9092', kafka_topic = 'orders', format = 'json', flush_interval = '10 seconds',
        time_column = 'event_time', upsert = 'partial', retention = '180 days');

-- Append-only: the items of each order, when it is placed.
CREATE TABLE order_items (
  order_id TEXT,
  restaurant_id BIGINT,
  item_id BIGINT,
  quantity BIGINT,
  price NUMERIC(10, 2),
  event_time TIMESTAMP
) WITH (kafka_brokers = 'localhost:9092', kafka_topic = 'order_items', format = 'json', flush_interval = '10 seconds',
        time_column = 'event_time', retention = '180 days');

-- Append-only: ratings of delivered orders.
CREATE TABLE ratings (
  order_id TEXT,
  restaurant_id BIGINT,
  stars BIGINT,
  event_time TIMESTAMP
) WITH (kafka_brokers = 'localhost:9092', kafka_topic = 'ratings', format = 'json', flush_interval = '10 seconds',
        time_column = 'event_time', retention = '180 days');

-- Dimension tables (no time column: every row kept, loaded by INSERT).
CREATE TABLE restaurants (restaurant_id BIGINT, name TEXT, cuisine TEXT, city TEXT);
CREATE TABLE items (item_id BIGINT, restaurant_id BIGINT, name TEXT, price NUMERIC(10, 2));

-- The streaming board: every play once, however often it is sent (dedup by
-- event_id; keys older than a day behind the newest play are forgotten).
CREATE TABLE plays (
  event_id TEXT PRIMARY KEY,
  user_id BIGINT,
  event_time TIMESTAMP,
  country TEXT,
  device_type TEXT,
  content_id BIGINT,
  content_category TEXT,
  event_type TEXT,
  session_duration_sec BIGINT,
  completed BOOLEAN
) WITH (kafka_brokers = 'localhost:9092', kafka_topic = 'plays', format = 'json', flush_interval = '10 seconds',
        time_column = 'event_time', dedup = 'true', dedup_window = '1 day', retention = '90 days');
