package idstore.jvm;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Types;

import org.apache.spark.sql.jdbc.JdbcDialect;
import org.apache.spark.sql.jdbc.JdbcDialects;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.MetadataBuilder;

import scala.Option;

/**
 * Spark's JDBC dialect for jdbc:redshift: URLs, which Spark 3.5 does not have.
 *
 * <p>Without it Spark reads through the Redshift driver with its generic dialect, which has two
 * defects, both seen through the driver against the local stand-in: the connection stays in
 * autocommit, where the driver ignores the fetch size and holds a partition's whole result in
 * memory; and a TIMESTAMPTZ column (Types.TIMESTAMP_WITH_TIMEZONE) stops the read with
 * UNRECOGNIZED_SQL_TYPE. Spark's PostgreSQL dialect does the same two things for pgjdbc.
 */
public final class RedshiftDialect extends JdbcDialect {
    private static final long serialVersionUID = 1L;
    private static final String PROBE_URL = "jdbc:redshift://probe/dev";

    /** Registers the dialect in this JVM once (a second class loader's copy is not registered again). */
    public static synchronized void register() {
        if (!JdbcDialects.get(PROBE_URL).getClass().getName().equals(RedshiftDialect.class.getName())) {
            JdbcDialects.registerDialect(new RedshiftDialect());
        }
    }

    @Override
    public boolean canHandle(String url) {
        return url.startsWith("jdbc:redshift:");
    }

    @Override
    public Option<DataType> getCatalystType(int sqlType, String typeName, int size, MetadataBuilder md) {
        if (sqlType == Types.TIMESTAMP_WITH_TIMEZONE) {
            return Option.apply(DataTypes.TimestampType);  // an instant, as Spark's TIMESTAMP is
        }
        return Option.empty();
    }

    @Override
    public void beforeFetch(Connection connection, scala.collection.immutable.Map<String, String> properties) {
        super.beforeFetch(connection, properties);
        // The driver fetches `fetchsize` rows at a time only inside a transaction (and with its
        // fetch ring buffer off); in autocommit it reads the whole result first.
        Option<String> fetchSize = properties.get("fetchsize");
        if (fetchSize.isDefined() && Integer.parseInt(fetchSize.get().trim()) > 0) {
            try {
                connection.setAutoCommit(false);
            } catch (SQLException e) {
                throw new IllegalStateException("cannot leave autocommit for a fetch-size read", e);
            }
        }
    }
}
