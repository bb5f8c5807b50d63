//! The dashboards' events made continuously as a clock moves, for `sluice
//! demo`: new orders and plays at a steady rate, and every later message of
//! an order (confirmation, kitchen, courier, delivery, rating) when its time
//! comes, minutes later, as in a real marketplace.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde_json::Value;

use super::restaurant::{meal_weighted_time, OrderMaker};
use super::streaming::PlayMaker;
use super::streaming::DUPLICATE_SHARE;
use super::{SplitMix64, Topic};

/// Messages an order causes on average (items, status changes, the
/// courier, a third of a rating): converts an event rate into orders.
const MESSAGES_PER_ORDER: f64 = 9.4;

/// How the live stream starts.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The seed.
    pub seed: u64,
    /// Restaurants orders go to (Zipf).
    pub restaurants: u64,
    /// Messages per second, all topics together: half to the restaurant
    /// topics, half to plays.
    pub events_per_second: u64,
    /// Orders placed over the day before the start (lunch and dinner
    /// peaks): their messages up to the start come out of the first
    /// [`LiveWorkload::advance`], the rest when their time comes, so orders
    /// under way at the start go on to be delivered.
    pub history_orders: u64,
    /// The first play's number: after the plays produced as history.
    pub first_play: u64,
    /// The clock at the start, microseconds since the epoch.
    pub start_micros: i64,
}

/// One message to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveMessage {
    /// Where it goes.
    pub topic: Topic,
    /// Its key: the value of the topic's key field.
    pub key: String,
    /// The JSON object.
    pub payload: String,
}

/// A message waiting for its time, ordered by (time, creation order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: i64,
    sequence: u64,
    topic: Topic,
    payload: String,
    key: String,
}

/// The live workload: call [`LiveWorkload::advance`] with the clock's time
/// and produce what it returns.
pub struct LiveWorkload {
    rng: SplitMix64,
    orders: OrderMaker,
    plays: PlayMaker,
    next_order: u64,
    next_play: u64,
    sequence: u64,
    clock: i64,
    /// When the live stream starts (history before).
    start: i64,
    orders_per_second: f64,
    plays_per_second: f64,
    /// Fractions of an order and a play carried to the next step, so that
    /// small steps still make the rate.
    carry: (f64, f64),
    pending: BinaryHeap<Reverse<Pending>>,
}

impl LiveWorkload {
    /// A stream starting at `options.start_micros`, its history scheduled.
    pub fn new(options: &LiveOptions) -> LiveWorkload {
        let rate = options.events_per_second as f64;
        let mut live = LiveWorkload {
            rng: SplitMix64(options.seed ^ 0x11fe_11fe_11fe_11fe),
            orders: OrderMaker::new(options.restaurants),
            plays: PlayMaker::new(),
            next_order: options.history_orders,
            next_play: options.first_play,
            sequence: 0,
            clock: options.start_micros,
            start: options.start_micros,
            orders_per_second: rate / 2.0 / MESSAGES_PER_ORDER,
            plays_per_second: rate / 2.0,
            carry: (0.0, 0.0),
            pending: BinaryHeap::new(),
        };
        let day = 86_400_000_000;
        let start = options.start_micros - day;
        for n in 0..options.history_orders {
            let created = meal_weighted_time(&mut live.rng, start, day);
            live.place(n, created);
        }
        // The first advance returns the history, from a day back.
        live.clock = start;
        live.carry = (0.0, 0.0);
        live
    }

    /// Schedules every message of order `n`, placed at `created`; 2% of its
    /// status messages come a minute and a half late.
    fn place(&mut self, n: u64, created: i64) {
        for (at, topic, message) in self.orders.order(&mut self.rng, n, created) {
            let late = topic == Topic::Orders && self.rng.unit() < 0.02;
            let at = if late { at + 90_000_000 } else { at };
            self.schedule(at, topic, &message);
        }
    }

    /// Messages still waiting for their time (orders under way).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Moves the clock to `now` and returns every message that happened since
    /// the last call, in time order: the orders and plays placed in between
    /// (spread evenly) and every earlier order's messages that came due. As
    /// in real traffic, 2% of order messages arrive a minute and a half late
    /// (after a later status of the same order) and 1% of every kind twice.
    pub fn advance(&mut self, now: i64) -> Vec<LiveMessage> {
        let from = self.clock;
        if now <= from {
            return Vec::new();
        }
        self.clock = now;
        // New orders and plays from the start on: the day before is history.
        let from = from.max(self.start);
        let seconds = (now - from).max(0) as f64 / 1e6;
        let orders = self.take(seconds * self.orders_per_second, 0);
        let plays = self.take(seconds * self.plays_per_second, 1);
        for i in 0..orders {
            let created = from + ((now - from) as f64 * (i as f64 + 0.5) / orders as f64) as i64;
            let n = self.next_order;
            self.next_order += 1;
            self.place(n, created);
        }
        for i in 0..plays {
            let at = from + ((now - from) as f64 * (i as f64 + 0.5) / plays as f64) as i64;
            let n = self.next_play;
            self.next_play += 1;
            let play = self.plays.play(&mut self.rng, n, at);
            self.schedule(at, Topic::Plays, &play.to_json());
        }
        let mut due = Vec::new();
        while self.pending.peek().is_some_and(|p| p.0.at <= now) {
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            let message = LiveMessage {
                topic: p.topic,
                key: p.key,
                payload: p.payload,
            };
            if self.rng.unit() < DUPLICATE_SHARE {
                due.push(message.clone());
            }
            due.push(message);
        }
        due
    }

    /// Whole events out of `amount` plus what was carried; keeps the rest.
    fn take(&mut self, amount: f64, which: usize) -> u64 {
        let carry = if which == 0 {
            &mut self.carry.0
        } else {
            &mut self.carry.1
        };
        let total = *carry + amount;
        let whole = total.floor();
        *carry = total - whole;
        whole as u64
    }

    fn schedule(&mut self, at: i64, topic: Topic, message: &Value) {
        let key = message[topic.key_field()]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| message[topic.key_field()].to_string());
        self.sequence += 1;
        self.pending.push(Reverse(Pending {
            at,
            sequence: self.sequence,
            topic,
            payload: message.to_string(),
            key,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_kept_and_orders_finish_minutes_later() {
        let start = 1_780_000_000_000_000;
        let mut live = LiveWorkload::new(&LiveOptions {
            seed: 3,
            restaurants: 100,
            events_per_second: 200,
            history_orders: 500,
            first_play: 9000,
            start_micros: start,
        });
        // The history: the day before the start, orders under way kept for later.
        let history = live.advance(start);
        assert!(history.iter().all(|m| m.topic != Topic::Plays));
        let placed = |list: &[LiveMessage]| {
            list.iter()
                .filter(|m| m.topic == Topic::Orders && m.payload.contains("\"NEW\""))
                .count()
        };
        assert!(
            (500..=510).contains(&placed(&history)),
            "{}",
            placed(&history)
        );
        let mut produced = Vec::new();
        // Twenty minutes in 250 ms steps.
        for step in 1..=4800 {
            produced.extend(live.advance(start + step * 250_000));
        }
        let per_second = produced.len() as f64 / 1200.0;
        // Orders placed in the last half hour are still under way, so less
        // than the full rate has come out yet.
        assert!((120.0..205.0).contains(&per_second), "{per_second}/s");
        assert!(live.pending() > 2_000, "{}", live.pending());
        let count = |topic: Topic, needle: &str| {
            produced
                .iter()
                .filter(|m| m.topic == topic && m.payload.contains(needle))
                .count()
        };
        let plays = count(Topic::Plays, "event_id");
        assert!((118_000..124_000).contains(&plays), "{plays} plays");
        let placed = count(Topic::Orders, "\"NEW\"");
        assert!((12_000..13_500).contains(&placed), "{placed} orders");
        // Food is ready 11 to 28 minutes after an order is placed.
        let ready = count(Topic::Orders, "READY_FOR_PICKUP");
        assert!((1_000..placed / 2).contains(&ready), "{ready} ready");
        // Numbering continues after the history.
        assert!(produced.iter().all(|m| m.key != "o0000000499"));
        assert!(produced.iter().any(|m| m.key == "o0000000500"));
        assert!(produced.iter().any(|m| m.key == "e000000009000"));
        // Nothing is produced before its time, and the clock never goes back.
        assert!(live.advance(start).is_empty());
        // Orders of the history under way at the start were finished live.
        let history_ids: std::collections::HashSet<&str> =
            history.iter().map(|m| m.key.as_str()).collect();
        assert!(produced
            .iter()
            .any(|m| history_ids.contains(m.key.as_str()) && m.payload.contains("DELIVERED")));
    }
}
