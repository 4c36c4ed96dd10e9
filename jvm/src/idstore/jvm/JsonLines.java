package idstore.jvm;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Collections;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.objects.Invoke;
import org.apache.spark.sql.catalyst.json.JSONOptions;
import org.apache.spark.sql.catalyst.json.JacksonParser;
import org.apache.spark.sql.catalyst.util.FailureSafeParser;
import org.apache.spark.sql.catalyst.util.PermissiveMode$;
import org.apache.spark.sql.sources.Filter;
import org.apache.spark.sql.types.AbstractDataType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;

import scala.Function1;
import scala.Function2;
import scala.collection.Iterator;
import scala.collection.JavaConverters;
import scala.collection.Seq;

/**
 * A JSON line parsed as Spark's JSON source parses it: Spark's JacksonParser and PERMISSIVE
 * FailureSafeParser, reading the line's UTF-8 bytes.
 *
 * from_json does the same with one difference: it gives Jackson a Reader over the line
 * (CreateJacksonParser.utf8String), so every byte is decoded to a char before it is parsed, and
 * a byte that is not UTF-8 becomes U+FFFD. The JSON source, and this, give Jackson the bytes: a
 * faster parser, and a line that is not UTF-8 is malformed, as spark.read.json finds it.
 *
 * {@link #column} wraps a configured instance in an Invoke: the plan carries it to the
 * executors, where each task deserializes its own copy and builds its parser on the first line.
 */
public final class JsonLines implements Serializable {
  private static final long serialVersionUID = 1L;

  private final StructType schema; // the event's fields and the corrupt-record column
  private final String corruptColumn;
  private final String timeZone;
  private transient FailureSafeParser<UTF8String> parser;

  /** The factory instance the Python side creates; {@link #column} makes the configured ones. */
  public JsonLines() {
    this(null, null, null);
  }

  private JsonLines(StructType schema, String corruptColumn, String timeZone) {
    this.schema = schema;
    this.corruptColumn = corruptColumn;
    this.timeZone = timeZone;
  }

  /**
   * The column parse(line): a struct of {@code schemaJson} (which holds {@code corruptColumn}),
   * null for a null line, as from_json(line, schema, {mode: PERMISSIVE, columnNameOfCorruptRecord}).
   */
  public Column column(Column line, String schemaJson, String corruptColumn, String timeZone) {
    StructType rowType = (StructType) DataType.fromJson(schemaJson);
    if (!Arrays.asList(rowType.fieldNames()).contains(corruptColumn)) {
      throw new IllegalArgumentException("the schema has no column " + corruptColumn);
    }
    JsonLines configured = new JsonLines(rowType, corruptColumn, timeZone);
    configured.parse(UTF8String.fromString("{}")); // Spark's parser classes link on this Spark, or fail here, on the driver
    Expression call = new Invoke(Literal.fromObject(configured), "parse", rowType,
        seq(Collections.singletonList(line.expr())), seq(Collections.<AbstractDataType>emptyList()),
        true, true, true);
    return new Column(call);
  }

  /** The line as a row of the schema; a line that is not one JSON object of it has the corrupt column set. */
  public InternalRow parse(UTF8String line) {
    if (parser == null) {
      parser = newParser();
    }
    Iterator<InternalRow> rows = parser.parse(line);
    return rows.hasNext() ? rows.next() : null;
  }

  @Override
  public String toString() {
    return "JsonLines(" + schema.simpleString() + ")";
  }

  private FailureSafeParser<UTF8String> newParser() {
    scala.collection.immutable.Map<String, String> settings =
        scala.collection.immutable.Map$.MODULE$.<String, String>empty()
        .updated("mode", "PERMISSIVE")
        .updated("columnNameOfCorruptRecord", corruptColumn);
    JSONOptions options = new JSONOptions(settings, timeZone, corruptColumn);
    StructField[] fields = Arrays.stream(schema.fields())
        .filter(f -> !f.name().equals(corruptColumn))
        .toArray(StructField[]::new);
    JacksonParser raw = new JacksonParser(new StructType(fields), options, false, seq(Collections.<Filter>emptyList()));
    Function2<JsonFactory, UTF8String, JsonParser> fromBytes = JsonLines::bytesParser;
    Function1<UTF8String, UTF8String> asRecord = record -> record;
    return new FailureSafeParser<>(record -> raw.parse(record, fromBytes, asRecord),
        PermissiveMode$.MODULE$, schema, corruptColumn);
  }

  /** A Jackson parser over the line's bytes, in place when they are a heap array (as a scan leaves them). */
  private static JsonParser bytesParser(JsonFactory factory, UTF8String line) {
    ByteBuffer bytes = line.getByteBuffer();
    try {
      return factory.createParser(bytes.array(), bytes.arrayOffset() + bytes.position(), bytes.remaining());
    } catch (IOException e) {
      throw new UncheckedIOException(e); // a RuntimeException: JacksonParser makes the line a bad record
    }
  }

  private static <T> Seq<T> seq(java.util.List<T> items) {
    return JavaConverters.asScalaBuffer(items).toSeq();
  }
}
