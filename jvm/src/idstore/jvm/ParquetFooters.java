package idstore.jvm;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.column.statistics.Statistics;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.metadata.BlockMetaData;
import org.apache.parquet.hadoop.metadata.ColumnChunkMetaData;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.PrimitiveType.PrimitiveTypeName;

/**
 * What the filter needs from a Parquet archive before its pass, from the files' footers alone,
 * read on the driver a few files at a time: each file's rows, and whether its id column can
 * hold a missing id (null, or blank as Spark's trim() sees it: empty or only spaces).
 *
 * A file can hold none when every row group's statistics say the column has no nulls and its
 * smallest value starts with a byte above the space: every blank string sorts at or below " ".
 * Without statistics (or with statistics a reader must not trust, which parquet-mr drops) the
 * file is reported as one that can, and the caller reads it to find out. Exact either way.
 */
public final class ParquetFooters {

  /**
   * One line per data file under {@code roots} (files, or folders listed recursively without
   * the hidden names Spark skips): path, TAB, rows, TAB, 1 if its ids can be missing else 0.
   * {@code idPath} is the id column's dotted path, matched without regard to case as Spark does.
   * An instance method: the class comes from the session's jar class loader (idstore.jvm).
   */
  public String summarise(Configuration conf, List<String> roots, String idPath, int threads)
      throws IOException, InterruptedException {
    List<FileStatus> files = new ArrayList<>();
    for (String root : roots) {
      addDataFiles(conf, new Path(root), files);
    }
    String[] column = idPath.split("\\.");
    ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, Math.min(threads, files.size())), task -> {
      Thread thread = new Thread(task, "idstore-parquet-footers");
      thread.setDaemon(true);
      return thread;
    });
    try {
      List<Future<String>> lines = new ArrayList<>();
      for (FileStatus file : files) {
        lines.add(pool.submit(() -> summariseFile(conf, file, column)));
      }
      StringBuilder out = new StringBuilder();
      for (Future<String> line : lines) {
        out.append(line.get()).append('\n');
      }
      return out.toString();
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      throw cause instanceof IOException ? (IOException) cause : new IOException(cause.toString(), cause);
    } finally {
      pool.shutdownNow();
    }
  }

  private static void addDataFiles(Configuration conf, Path root, List<FileStatus> files) throws IOException {
    FileSystem fs = root.getFileSystem(conf);
    FileStatus status = fs.getFileStatus(root);
    if (status.isDirectory()) {
      addDataFiles(fs, status, files);
    } else {
      files.add(status);
    }
  }

  /**
   * The visible non-empty files under {@code folder}. listStatus, not listFiles: the located
   * statuses listFiles builds ask a local file system for permissions, one process per file.
   */
  private static void addDataFiles(FileSystem fs, FileStatus folder, List<FileStatus> files) throws IOException {
    for (FileStatus child : fs.listStatus(folder.getPath())) {
      if (hidden(child.getPath().getName())) {
        continue;
      }
      if (child.isDirectory()) {
        addDataFiles(fs, child, files);
      } else if (child.getLen() > 0) { // an empty file holds no rows
        files.add(child);
      }
    }
  }

  /**
   * The names Spark's own file listing skips (InMemoryFileIndex), so the footers cover the files
   * the pass reads; idstore.events.reader.is_hidden is the shorter rule for folders Spark wrote.
   */
  private static boolean hidden(String name) {
    return (name.startsWith("_") && !name.contains("=")) || name.startsWith(".") || name.endsWith("._COPYING_");
  }

  private static String summariseFile(Configuration conf, FileStatus file, String[] column) throws IOException {
    long rows = 0;
    boolean canMiss = false;
    try (ParquetFileReader reader = ParquetFileReader.open(HadoopInputFile.fromStatus(file, conf))) {
      for (BlockMetaData block : reader.getFooter().getBlocks()) {
        rows += block.getRowCount();
        canMiss |= block.getRowCount() > 0 && canMissId(block, column);
      }
    }
    return file.getPath() + "\t" + rows + "\t" + (canMiss ? 1 : 0);
  }

  private static boolean canMissId(BlockMetaData block, String[] column) {
    for (ColumnChunkMetaData chunk : block.getColumns()) {
      if (!samePath(chunk.getPath().toArray(), column)) {
        continue;
      }
      Statistics<?> stats = chunk.getStatistics();
      if (stats == null || !stats.isNumNullsSet() || stats.getNumNulls() > 0 || !stats.hasNonNullValue()) {
        return true;
      }
      PrimitiveTypeName type = chunk.getPrimitiveType().getPrimitiveTypeName();
      if (type != PrimitiveTypeName.BINARY && type != PrimitiveTypeName.FIXED_LEN_BYTE_ARRAY) {
        return false; // a number is never blank
      }
      byte[] min = ((Binary) stats.genericGetMin()).getBytesUnsafe();
      return min.length == 0 || (min[0] & 0xff) <= ' ';
    }
    return true; // no such column in this file: every id in it reads as null
  }

  private static boolean samePath(String[] path, String[] column) {
    if (path.length != column.length) {
      return false;
    }
    for (int i = 0; i < path.length; i++) {
      if (!path[i].equalsIgnoreCase(column[i])) {
        return false;
      }
    }
    return true;
  }
}
