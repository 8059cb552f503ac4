/**
 * `compute` remembered for up to `max` distinct arguments, forgotten all at
 * once when full. For the hit path's small lookups (a header value per ttl,
 * the coding per Accept-Encoding, a parsed query string), where the argument
 * set is small and a plain Map read is the whole cost: lru-cache's memo keeps
 * recency, which costs each read more than these computations save.
 */
export function remembered<K, V>(max: number, compute: (key: K) => V): (key: K) => V {
  const values = new Map<K, V>();
  return (key) => {
    let value = values.get(key);
    if (value === undefined) {
      value = compute(key);
      if (values.size >= max) values.clear();
      values.set(key, value);
    }
    return value;
  };
}
