package idstore.jvm;

import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Collections;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.objects.StaticInvoke;
import org.apache.spark.sql.types.AbstractDataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.unsafe.Platform;
import org.apache.spark.unsafe.array.ByteArrayMethods;
import org.apache.spark.unsafe.types.UTF8String;

import scala.collection.JavaConverters;

/**
 * The plainly written value of {@code "key":"…"} in a raw JSON line, or null when the line does
 * not have the one shape that can be read with certainty.
 *
 * The same test as the built-in expression of idstore.events.prefilter (whose docstring proves
 * it exact): the line holds no backslash-u escape of an ASCII character, the key K occurs
 * exactly once, as {@code "K":"} or {@code "K": "}, and the text after it up to the next quote
 * is not blank and holds no backslash. K is ASCII and holds no quote, backslash or colon
 * (plain_shape_possible), so no other K can overlap {@code "K":"}.
 *
 * {@link #column} puts {@link #read} into Spark's generated code (a StaticInvoke), so it reads the
 * line's UTF-8 bytes where the scan left them: a UDF would first copy and decode every line to
 * a java.lang.String, which cost more than the test itself. One pass over the line, 8 bytes at
 * a time, finds every backslash and every first byte of K.
 */
public final class PlainValue {
  private static final long ONES = 0x0101010101010101L;
  private static final long HIGHS = 0x8080808080808080L;
  private static final long BACKSLASHES = ONES * '\\';
  private static final boolean LITTLE_ENDIAN = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;

  /** The column read(line, key), compiled into the stage like a built-in. */
  public Column column(Column line, String key) {
    Expression[] arguments = {line.expr(), Literal.create(key, DataTypes.StringType)};
    return new Column(new StaticInvoke(PlainValue.class, DataTypes.StringType, "read",
        JavaConverters.asScalaBuffer(Arrays.asList(arguments)).toSeq(),
        JavaConverters.asScalaBuffer(Collections.<AbstractDataType>emptyList()).toSeq(),
        true, true, true));
  }

  /** The plain value of key in line, or null. */
  public static UTF8String read(UTF8String line, UTF8String key) {
    Object base = line.getBaseObject(), keyBase = key.getBaseObject();
    long offset = line.getBaseOffset(), keyOffset = key.getBaseOffset();
    int length = line.numBytes(), n = key.numBytes();
    if (n == 0) {
      return null;
    }
    byte first = Platform.getByte(keyBase, keyOffset);
    int at = -1;
    for (int i = next(base, offset, length, 0, first); i >= 0; i = next(base, offset, length, i + 1, first)) {
      if (Platform.getByte(base, offset + i) == '\\') {
        if (i + 1 < length && Platform.getByte(base, offset + i + 1) == 'u' && spellsAscii(base, offset, length, i)) {
          return null;
        }
      } else if (i + n <= length && ByteArrayMethods.arrayEquals(base, offset + i, keyBase, keyOffset, n)) {
        if (at >= 0) {
          return null; // a second K
        }
        at = i;
      }
    }
    // "K":" or "K": " (Python's json.dumps), the value's opening quote at quote
    int quote = at + n + 2;
    if (quote < length && Platform.getByte(base, offset + quote) == ' ') {
      quote++;
    }
    int start = quote + 1;
    if (at < 1 || start > length || Platform.getByte(base, offset + at - 1) != '"'
        || Platform.getByte(base, offset + at + n) != '"' || Platform.getByte(base, offset + at + n + 1) != ':'
        || Platform.getByte(base, offset + quote) != '"') {
      return null;
    }
    boolean blank = true, ascii = true; // blank: only spaces, as Spark's trim() sees blank
    int end = start;
    for (; end < length; end++) {
      byte b = Platform.getByte(base, offset + end);
      if (b == '"') {
        break;
      }
      if (b == '\\') {
        return null;
      }
      blank &= b == ' ';
      ascii &= b >= 0;
    }
    if (end == length || blank) {
      return null;
    }
    byte[] bytes = new byte[end - start];
    Platform.copyMemory(base, offset + start, bytes, Platform.BYTE_ARRAY_OFFSET, bytes.length);
    UTF8String value = UTF8String.fromBytes(bytes);
    // the parse decodes malformed UTF-8 to U+FFFD: only a value that decodes to itself is certain
    return ascii || UTF8String.fromString(value.toString()).equals(value) ? value : null;
  }

  /**
   * Whether the backslash-u at i may spell an ASCII character (backslash-u 0000 to 007f), or is cut
   * short: only such an escape can spell a character of K (ASCII), a quote or a colon. One of a
   * non-ASCII character (ensure_ascii's) spells none of them.
   */
  private static boolean spellsAscii(Object base, long offset, int length, int i) {
    if (i + 5 >= length) {
      return true;
    }
    byte third = Platform.getByte(base, offset + i + 4);
    return Platform.getByte(base, offset + i + 2) == '0' && Platform.getByte(base, offset + i + 3) == '0'
        && third >= '0' && third <= '7';
  }

  /** The first index at or after from of a backslash or of the byte first; -1 if none. */
  private static int next(Object base, long offset, int length, int from, byte first) {
    long firsts = ONES * (first & 0xff);
    int i = from;
    for (; i + 8 <= length; i += 8) {
      long word = Platform.getLong(base, offset + i);
      word = LITTLE_ENDIAN ? word : Long.reverseBytes(word); // byte i is the lowest
      long found = zeroBytes(word ^ firsts) | zeroBytes(word ^ BACKSLASHES);
      if (found != 0) {
        // the lowest flagged byte is exact (only bytes above a zero byte can be flagged falsely)
        return i + (Long.numberOfTrailingZeros(found) >>> 3);
      }
    }
    for (; i < length; i++) {
      byte b = Platform.getByte(base, offset + i);
      if (b == first || b == '\\') {
        return i;
      }
    }
    return -1;
  }

  /** The high bit of each zero byte of v set (and maybe of bytes above the first zero one). */
  private static long zeroBytes(long v) {
    return (v - ONES) & ~v & HIGHS;
  }
}
