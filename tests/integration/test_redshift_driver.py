"""The real Redshift JDBC driver (from .jars/jobs) through Spark's JVM: every URL form idstore's
config takes, the driver's own acceptsURL takes too; a form the driver refuses, the config
refuses first, naming source.url."""
import pytest

from idstore.config import ConfigError, load_config
from idstore_tools.local_submit import REDSHIFT_DRIVER, redshift_driver_jar

ACCEPTED_BY_IDSTORE = [
    "jdbc:redshift://analytics.abc123.us-east-1.redshift.amazonaws.com:5439/dev",
    "jdbc:redshift://host/dev",
    "jdbc:redshift://host:5439/dev?ssl=true&DbUser=etl&AutoCreate=true",
    "jdbc:redshift://host:5439/dev;ssl=true",
    "jdbc:redshift://[::1]:5439/dev",
    "jdbc:redshift://host1:5439,host2:5439/dev",
    "jdbc:redshift://wg.123456789012.us-east-1.redshift-serverless.amazonaws.com:5439/dev",
    "jdbc:redshift:iam://analytics.abc123.us-east-1.redshift.amazonaws.com:5439/dev",
    "jdbc:redshift:iam://analytics:us-east-1/dev?DbUser=etl&DbGroups=g",
    "jdbc:redshift:iam://host/dev?DbUser=etl",
    "jdbc:redshift:iam://cluster:us-gov-west-1/dev",
]
REFUSED_BY_THE_DRIVER = [
    "jdbc:redshift://host:5439",          # no database
    "jdbc:redshift://",                   # no host
    "jdbc:redshift:iam://",
    "jdbc:redshift://host:notaport/dev",
    "jdbc:redshift://host:99999/dev",
    "jdbc:Redshift://host:5439/dev",
]
# the driver takes these (pgjdbc's lenient forms), idstore does not: not the documented forms
REFUSED_BY_IDSTORE_ONLY = ["jdbc:redshift:dev", "jdbc:redshift:foo://host:5439/dev", "jdbc:redshift://host:5439/"]


@pytest.fixture(scope="module")
def driver(spark):
    """An instance of com.amazon.redshift.jdbc.Driver loaded from the pinned jar inside Spark's JVM."""
    jar = redshift_driver_jar()
    jvm = spark.sparkContext._jvm
    gateway = spark.sparkContext._gateway
    urls = gateway.new_array(jvm.java.net.URL, 1)
    urls[0] = jvm.java.io.File(str(jar)).toURI().toURL()
    loader = jvm.java.net.URLClassLoader(urls, jvm.java.lang.ClassLoader.getSystemClassLoader())
    driver_class = jvm.java.lang.Class.forName(REDSHIFT_DRIVER, True, loader)
    return driver_class.getDeclaredConstructor(gateway.new_array(jvm.java.lang.Class, 0)).newInstance(
        gateway.new_array(jvm.java.lang.Object, 0))


def _idstore_accepts(url):
    try:
        load_config(None, [f"source.url={url}"])
    except ConfigError as exc:
        assert str(exc).startswith("source.url:"), exc
        rest = url.split("//", 1)[-1]
        assert not rest or rest not in str(exc)  # the URL is never echoed (it may carry options)
        return False
    return True


def test_the_driver_is_the_real_one(driver):
    assert driver.getClass().getName() == REDSHIFT_DRIVER
    assert driver.getMajorVersion() == 2


@pytest.mark.parametrize("url", ACCEPTED_BY_IDSTORE)
def test_every_url_idstore_accepts_the_driver_accepts(driver, url):
    assert _idstore_accepts(url)
    assert driver.acceptsURL(url)


@pytest.mark.parametrize("url", REFUSED_BY_THE_DRIVER)
def test_a_url_the_driver_refuses_is_refused_by_the_config_first(driver, url):
    assert not driver.acceptsURL(url)
    assert not _idstore_accepts(url)


@pytest.mark.parametrize("url", REFUSED_BY_IDSTORE_ONLY)
def test_forms_outside_the_documented_ones_are_refused_though_the_driver_is_lenient(driver, url):
    assert not _idstore_accepts(url)
