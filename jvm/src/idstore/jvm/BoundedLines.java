package idstore.jvm;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.aggregate.TypedImperativeAggregate;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.unsafe.types.UTF8String;

import scala.collection.IndexedSeq;
import scala.collection.JavaConverters;
import scala.collection.Seq;

/**
 * An aggregate that gathers the non-null strings it sees, joined by newlines, while they stay
 * within a bound of lines and of bytes; past either bound it gives null.
 *
 * The filter pass observes its bad events with it: a few bad events come back with the pass's
 * counts, so the quarantine needs no second read of their files. PySpark's observe takes
 * aggregates only, collect_list would hold every value on the executors and the driver however
 * many there are, and an Aggregator (functions.udaf) cannot be observed on Spark 3.5 (its
 * accumulator does not serialize once used). Past the bound a buffer keeps only its flag, so
 * memory stays bounded whatever the archive holds, and the caller reads the files again.
 * The values must hold no newline (a to_json value never does).
 */
public final class BoundedLines extends TypedImperativeAggregate<BoundedLines.Buffer> implements java.io.Serializable {
  private static final long serialVersionUID = 1L;
  private final Expression child;
  private final int maxLines;
  private final long maxBytes;
  private final int mutableAggBufferOffset;
  private final int inputAggBufferOffset;

  /** The factory idstore.jvm loads: a new instance of it builds the column. */
  public BoundedLines() {
    this(null, 0, 0L, 0, 0);
  }

  public BoundedLines(Expression child, int maxLines, long maxBytes, int mutableAggBufferOffset,
                      int inputAggBufferOffset) {
    this.child = child;
    this.maxLines = maxLines;
    this.maxBytes = maxBytes;
    this.mutableAggBufferOffset = mutableAggBufferOffset;
    this.inputAggBufferOffset = inputAggBufferOffset;
  }

  /** The column bounded(input), within maxLines values and maxBytes bytes of UTF-8. */
  public Column column(Column input, int maxLines, long maxBytes) {
    return new Column(new BoundedLines(input.expr(), maxLines, maxBytes, 0, 0).toAggregateExpression());
  }

  /** The partial result of one task, or of several merged. */
  public static final class Buffer {
    public List<byte[]> lines = new ArrayList<>();
    public long bytes;
    public boolean overflowed;
  }

  @Override
  public Buffer createAggregationBuffer() {
    return new Buffer();
  }

  @Override
  public Buffer update(Buffer buffer, InternalRow input) {
    Object value = child.eval(input);
    if (value == null || buffer.overflowed) {
      return buffer;
    }
    byte[] line = ((UTF8String) value).getBytes();
    buffer.lines.add(line);
    buffer.bytes += line.length;
    return checked(buffer);
  }

  @Override
  public Buffer merge(Buffer into, Buffer other) {
    if (other.overflowed) {
      into.overflowed = true;
    } else if (!into.overflowed) {
      into.lines.addAll(other.lines);
      into.bytes += other.bytes;
    }
    return checked(into);
  }

  private Buffer checked(Buffer buffer) {
    if (buffer.overflowed || buffer.lines.size() > maxLines || buffer.bytes > maxBytes) {
      buffer.overflowed = true;
      buffer.lines = new ArrayList<>();  // only the flag is kept, so memory stays bounded
      buffer.bytes = 0;
    }
    return buffer;
  }

  @Override
  public Object eval(Buffer buffer) {
    if (buffer.overflowed) {
      return null;
    }
    ByteArrayOutputStream joined = new ByteArrayOutputStream();
    for (int i = 0; i < buffer.lines.size(); i++) {
      if (i > 0) {
        joined.write('\n');
      }
      joined.write(buffer.lines.get(i), 0, buffer.lines.get(i).length);
    }
    return UTF8String.fromBytes(joined.toByteArray());
  }

  @Override
  public byte[] serialize(Buffer buffer) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeBoolean(buffer.overflowed);
      out.writeInt(buffer.lines.size());
      for (byte[] line : buffer.lines) {
        out.writeInt(line.length);
        out.write(line);
      }
    } catch (IOException exc) {
      throw new UncheckedIOException(exc);
    }
    return bytes.toByteArray();
  }

  @Override
  public Buffer deserialize(byte[] storage) {
    Buffer buffer = new Buffer();
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(storage))) {
      buffer.overflowed = in.readBoolean();
      int n = in.readInt();
      for (int i = 0; i < n; i++) {
        byte[] line = new byte[in.readInt()];
        in.readFully(line);
        buffer.lines.add(line);
        buffer.bytes += line.length;
      }
    } catch (IOException exc) {
      throw new UncheckedIOException(exc);
    }
    return buffer;
  }

  @Override
  public DataType dataType() {
    return DataTypes.StringType;
  }

  @Override
  public boolean nullable() {
    return true;
  }

  @Override
  public Seq<Expression> children() {
    return JavaConverters.asScalaBuffer(Collections.singletonList(child)).toSeq();
  }

  @Override
  public Expression withNewChildrenInternal(IndexedSeq<Expression> children) {
    return new BoundedLines(children.apply(0), maxLines, maxBytes, mutableAggBufferOffset, inputAggBufferOffset);
  }

  @Override
  public int mutableAggBufferOffset() {
    return mutableAggBufferOffset;
  }

  @Override
  public int inputAggBufferOffset() {
    return inputAggBufferOffset;
  }

  @Override
  public BoundedLines withNewMutableAggBufferOffset(int offset) {
    return new BoundedLines(child, maxLines, maxBytes, offset, inputAggBufferOffset);
  }

  @Override
  public BoundedLines withNewInputAggBufferOffset(int offset) {
    return new BoundedLines(child, maxLines, maxBytes, mutableAggBufferOffset, offset);
  }

  @Override
  public String prettyName() {
    return "idstore_bounded_lines";
  }

  @Override
  public int productArity() {
    return 5;
  }

  @Override
  public Object productElement(int n) {
    switch (n) {
      case 0: return child;
      case 1: return maxLines;
      case 2: return maxBytes;
      case 3: return mutableAggBufferOffset;
      case 4: return inputAggBufferOffset;
      default: throw new IndexOutOfBoundsException(String.valueOf(n));
    }
  }

  @Override
  public boolean canEqual(Object other) {
    return other instanceof BoundedLines;
  }

  @Override
  public boolean equals(Object other) {
    if (!(other instanceof BoundedLines)) {
      return false;
    }
    BoundedLines that = (BoundedLines) other;
    return child.equals(that.child) && maxLines == that.maxLines && maxBytes == that.maxBytes
        && mutableAggBufferOffset == that.mutableAggBufferOffset && inputAggBufferOffset == that.inputAggBufferOffset;
  }

  @Override
  public int hashCode() {
    return java.util.Objects.hash(child, maxLines, maxBytes, mutableAggBufferOffset, inputAggBufferOffset);
  }
}
