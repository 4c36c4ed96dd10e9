package idstore.jvm;

import java.sql.Connection;
import java.sql.Driver;
import java.sql.DriverPropertyInfo;
import java.sql.SQLException;
import java.sql.SQLFeatureNotSupportedException;
import java.util.Properties;
import java.util.logging.Logger;

/**
 * The Redshift JDBC driver as idstore's source reads name it (Spark's `driver` option).
 *
 * <p>It only delegates to com.amazon.redshift.jdbc.Driver. What it adds is when it is loaded:
 * Spark loads the named driver class on every executor before that executor's first read, and
 * loading this class registers {@link RedshiftDialect} there, before Spark looks the dialect up.
 */
public final class RedshiftReadDriver implements Driver {
    public static final String DELEGATE = "com.amazon.redshift.jdbc.Driver";

    static {
        RedshiftDialect.register();
    }

    private volatile Driver delegate;

    private Driver delegate() throws SQLException {
        if (delegate == null) {
            ClassLoader loader = RedshiftReadDriver.class.getClassLoader();
            try {
                Class<?> driverClass = Class.forName(DELEGATE, true, loader);
                delegate = (Driver) driverClass.getDeclaredConstructor().newInstance();
            } catch (ReflectiveOperationException e) {
                throw new SQLException(
                        "the Redshift JDBC driver (" + DELEGATE + ") is not on the class path of " + loader, e);
            }
        }
        return delegate;
    }

    @Override
    public Connection connect(String url, Properties info) throws SQLException {
        return delegate().connect(url, info);
    }

    @Override
    public boolean acceptsURL(String url) throws SQLException {
        return delegate().acceptsURL(url);
    }

    @Override
    public DriverPropertyInfo[] getPropertyInfo(String url, Properties info) throws SQLException {
        return delegate().getPropertyInfo(url, info);
    }

    @Override
    public int getMajorVersion() {
        try {
            return delegate().getMajorVersion();
        } catch (SQLException e) {
            return 0;
        }
    }

    @Override
    public int getMinorVersion() {
        try {
            return delegate().getMinorVersion();
        } catch (SQLException e) {
            return 0;
        }
    }

    @Override
    public boolean jdbcCompliant() {
        return false;  // as the Redshift driver says of itself
    }

    @Override
    public Logger getParentLogger() throws SQLFeatureNotSupportedException {
        throw new SQLFeatureNotSupportedException("no java.util.logging parent");
    }
}
