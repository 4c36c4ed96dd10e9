"""Keeping secrets out of every output: URLs that carry them are refused, and every password
idstore looked up is scrubbed from Python's logs, the JVM's log4j output, reports and the summary.
"""
import json
import logging
import re
import threading
from typing import Any, List, Mapping, Set
from urllib.parse import unquote

REDACTED = "*********(redacted)"

# Names of settings whose values are secret: Spark's spark.redaction.regex for the UI, plans and
# event logs, and idstore's own masking of [spark] settings in reports.
SECRET_SETTING_REGEX = r"(?i)secret|password|token|credential|access[._]?key"
# Data-source options Spark must hide in plans (the JDBC url may carry a user, never a password)
SECRET_OPTION_REGEX = r"(?i)url|password|secret|user|token"
SPARK_REDACTION = {
    "spark.redaction.regex": SECRET_SETTING_REGEX,
    "spark.sql.redaction.options.regex": SECRET_OPTION_REGEX,
}

# JDBC URL options that carry a credential, as the Redshift (and PostgreSQL) drivers spell them;
# matched case-insensitively, so Password, PWD, AccessKeyID, SecretAccessKey, SessionToken, ...
_CREDENTIAL_OPTIONS = re.compile(
    r"(?i)^(pwd|accesskeyid|access_key_id|sessiontoken|session_token|token|authtoken|auth_token|"
    r"sslkey|sslcert|.*secret.*|.*password.*)$"
)
_URL_USERINFO_PASSWORD = re.compile(r"//[^/@:?;]+:[^/@]*@")
_SECRET_SETTING = re.compile(SECRET_SETTING_REGEX)

# Process-wide on purpose: a log record or an exception text can come from anywhere.
_KNOWN_SECRETS: Set[str] = set()
_LOCK = threading.Lock()


def url_credential_options(url: str) -> List[str]:
    """The names of the credential-carrying options in a JDBC URL (`user:password@` as "password").

    Options follow `?` and are separated by `&`, or by `;` in the Redshift driver's form.
    """
    found = ["password"] if _URL_USERINFO_PASSWORD.search(url) else []
    options = re.split(r"[?;&]", url)[1:]
    for option in options:
        name = unquote(option.partition("=")[0]).strip()
        if name and _CREDENTIAL_OPTIONS.match(name):
            found.append(name)
    return found


def looks_secret(setting_name: str) -> bool:
    return bool(_SECRET_SETTING.search(setting_name))


def with_redaction_kept(spark_conf: Mapping[str, str]) -> Mapping[str, str]:
    """`spark_conf` with Spark's redaction patterns widened, never narrowed or switched off.

    A [spark] setting of spark.redaction.regex or spark.sql.redaction.options.regex is added
    to idstore's pattern as an alternative: it can make Spark hide more, not less.
    """
    merged = dict(spark_conf)
    for key, ours in SPARK_REDACTION.items():
        theirs = merged.get(key, "").strip()
        merged[key] = ours if not theirs or theirs == ours else f"{ours}|(?:{theirs})"
    return merged


def remember_secret(value: str) -> None:
    """Scrub `value` from every log record and report from now on."""
    if value:
        with _LOCK:
            _KNOWN_SECRETS.add(value)
            _KNOWN_SECRETS.add(json.dumps(value)[1:-1])  # as it appears inside JSON


def known_secrets() -> List[str]:
    with _LOCK:
        return sorted(_KNOWN_SECRETS, key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every remembered secret replaced."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrubbed(data: Any) -> Any:
    """`data` (JSON-like) with every remembered secret replaced."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {key: scrubbed(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrubbed(value) for value in data]
    return data


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs remembered secrets from messages and tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _KNOWN_SECRETS:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's to report, not ours
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def java_regex_literal(text: str) -> str:
    """`text` as a Java regex matching it literally, every UTF-16 unit as \\uXXXX.

    Nothing of it can be read as regex syntax, a log4j pattern brace or a ${lookup}.
    """
    units = text.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02X}{units[i + 1]:02X}" for i in range(0, len(units), 2))


def scrub_jvm_logs(spark) -> int:
    """Give every log4j2 appender of this JVM a layout that replaces the remembered secrets.

    Spark's own messages, its plans and errors and a JDBC driver's exceptions go through the
    driver's log4j2 appenders; each appender keeps its pattern and gains a RegexReplacement.
    The secrets travel to the JVM only as compiled patterns, never as a setting. Returns the
    number of appenders changed. (On a cluster the executors' own log files are not reached;
    their task failures are reported, and logged, on the driver.)
    """
    secrets = known_secrets()
    if not secrets:
        return 0
    jvm = spark.sparkContext._jvm
    core = jvm.org.apache.logging.log4j.core
    pattern = jvm.java.util.regex.Pattern.compile("|".join(java_regex_literal(s) for s in secrets))
    replacement = core.pattern.RegexReplacement.createRegexReplacement(pattern, REDACTED)
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    configuration = context.getConfiguration()
    console_target = getattr(core.appender, "ConsoleAppender$Target")
    changed = 0
    for name in list(configuration.getAppenders().keySet()):
        appender = configuration.getAppender(name)
        layout = appender.getLayout()
        if appender.getClass().getName() != "org.apache.logging.log4j.core.appender.ConsoleAppender" or \
                layout is None or layout.getClass().getSimpleName() != "PatternLayout":
            continue
        redacting = (
            core.layout.PatternLayout.newBuilder()
            .withPattern(layout.getConversionPattern())
            .withConfiguration(configuration)
            .withRegexReplacement(replacement)
            .build()
        )
        target = console_target.valueOf(str(appender.getTarget().name()))
        replacement_appender = (
            core.appender.ConsoleAppender.newBuilder().setName(name).setTarget(target)
            .setLayout(redacting).setConfiguration(configuration).build()
        )
        replacement_appender.start()
        loggers = configuration.getLoggers()
        for logger_config in [configuration.getRootLogger(), *(loggers.get(k) for k in list(loggers.keySet()))]:
            if logger_config.getAppenders().containsKey(name):
                logger_config.removeAppender(name)
                logger_config.addAppender(replacement_appender, None, None)
        configuration.getAppenders().put(name, replacement_appender)
        appender.stop()
        changed += 1
    context.updateLoggers()
    return changed
