package idstore.jvm;

import org.apache.spark.sql.api.java.UDF2;

/**
 * idstore_plain_value(line, key): the plainly written value of {@code "key":"…"} in a raw JSON
 * line, or null when the line does not have the one shape that can be read with certainty.
 *
 * The same test as the built-in expression of idstore.events.prefilter (whose docstring proves
 * it exact), in one pass of String.indexOf (a JIT intrinsic) instead of several byte searches:
 * the line holds no backslash-u escape, the key K occurs exactly once, as {@code "K":"}, and the
 * text after it up to the next quote is not blank and holds no backslash. K must hold no quote,
 * backslash or colon (plain_shape_possible), so no other K can overlap {@code "K":"}.
 */
public final class PlainValue implements UDF2<String, String, String> {
  private static final long serialVersionUID = 1L;

  @Override
  public String call(String line, String key) {
    if (line == null || key == null || key.isEmpty()) {
      return null;
    }
    int at = line.indexOf(key); // the first K: it must be the only one
    int n = key.length();
    if (at < 1 || line.charAt(at - 1) != '"' || !line.startsWith("\":\"", at + n)) {
      return null;
    }
    int start = at + n + 3;
    int end = line.indexOf('"', start);
    if (end < 0 || line.indexOf(key, start) >= 0 || line.contains("\\u")) {
      return null;
    }
    boolean blank = true; // only spaces, as Spark's trim() sees blank
    for (int i = start; i < end; i++) {
      char c = line.charAt(i);
      if (c == '\\') {
        return null;
      }
      blank &= c == ' ';
    }
    return blank ? null : line.substring(start, end);
  }
}
