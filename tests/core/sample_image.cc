#include "tests/core/sample_image.h"

#include <cstring>

#include "core/context.h"
#include "core/image_writer.h"
#include "core/records.h"
#include "mm/page_array.h"

namespace crlib::testing {

ImageInfo SampleInfo(uint32_t flags) {
  ImageInfo info;
  info.cpu_family = CpuFamily::kX86_64;
  info.page_size = 4096;
  info.xsave_features = 0x2e7;
  info.xsave_size = 2696;
  info.flags = flags;
  info.kernel_release = "6.18.44-test";
  return info;
}

std::vector<uint8_t> BuildSampleImage(uint32_t flags) {
  std::vector<uint8_t> image;
  MemorySink sink(&image);
  ImageWriter writer(&sink, SampleInfo(flags));
  Context ctx(Options{.compression_level = (flags & kImageCompressed) ? 3 : 0,
                      .mappable = (flags & kImageMappable) != 0});
  ctx.set_writer(&writer);
  ObjectRegistry& reg = ctx.registry();
  auto check = [](const absl::Status& st) {
    if (!st.ok()) abort();
  };
  check(writer.Begin());

  ProcessRecord proc;
  proc.pid = 4242;
  proc.ppid = 1;
  proc.pgid = proc.sid = 4242;
  proc.umask = 022;
  proc.exit_signal = 17;
  proc.comm = "sample";
  proc.cwd = "/tmp";
  proc.root = "/";
  ObjectRef p = reg.NewRef();
  check(writer.Write(proc, p, 0));

  ThreadRecord thread;
  thread.tid = 4242;
  thread.sigmask = 1u << 9;
  thread.rseq_address = 0x7f00deadbe00;
  thread.rseq_length = 32;
  thread.rseq_signature = 0x53053053;
  thread.syscall_nr = 230;
  thread.comm = "sample";
  ObjectRef t = reg.NewRef();
  check(writer.Write(thread, t, p));

  X86RegistersRecord regs;
  regs.rip = 0x401000;
  regs.rsp = 0x7ffc00001000;
  regs.rax = static_cast<uint64_t>(-4);
  regs.orig_rax = 230;
  check(writer.Write(regs, 0, t));
  check(writer.Write(XstateRecord{.features = 0x2e7, .xstate_bv = 0x7}, 0, t));
  XstateComponentRecord avx;
  avx.component = 2;
  avx.data.assign(256, 0xa5);
  check(writer.Write(avx, 0, t));

  check(writer.Write(SignalHandlersRecord{.handlers = {{.signo = 10, .handler = 0x401200,
                                                         .flags = 0x04000000, .restorer = 0x401300,
                                                         .mask = 0}}},
                     0, p));
  PendingSignal pending{.signo = 10, .siginfo = Bytes(128, 0)};
  pending.siginfo[0] = 10;
  check(writer.Write(PendingSignalsRecord{.shared = 0, .signals = {pending}}, 0, t));
  check(writer.Write(RlimitsRecord{.limits = {{.resource = 7, .cur = 1024, .max = 4096}}}, 0, p));
  check(writer.Write(ItimersRecord{.timers = {{.which = 0, .interval_usec = 0, .value_usec = 500000}}},
                     0, p));
  check(writer.Write(ThreadAttributesRecord{.pdeathsig = 15, .no_new_privs = 1,
                                            .timer_slack_ns = 50000, .seccomp_mode = 2},
                     0, t));
  check(writer.Write(ProcessAttributesRecord{.child_subreaper = 1, .oom_score_adj = 100,
                                             .thp_disable = 1, .membarrier = 16,
                                             .loginuid = 1000, .dumpable = 1},
                     0, p));
  check(writer.Write(PosixTimersRecord{.timers = {{.id = 3, .clock = 1, .notify = 4, .signo = 34,
                                                    .value = 0x5eed, .target_tid = 4242,
                                                    .interval_ns = 20000000,
                                                    .value_ns = 1000000}}},
                     0, p));
  // One instruction: return SECCOMP_RET_ALLOW.
  check(writer.Write(SeccompRecord{.filters = {{.flags = 0,
                                                .program = {0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}}}},
                     0, p));

  ObjectRef files = reg.NewRef();
  check(writer.Write(FileTableRecord{.fd_count = 3}, files, p));
  ObjectRef pipe = reg.Intern({ObjectKind::kPipe, 99}).ref;
  const char buffered[] = "bytes in the pipe";
  iovec pipe_bulk{const_cast<char*>(buffered), sizeof(buffered) - 1};
  check(writer.Write(PipeRecord{.inode = 99, .capacity = 65536}, pipe, files,
                     absl::MakeConstSpan(&pipe_bulk, 1)));
  ObjectRef read_end = reg.NewRef();
  check(writer.Write(FileRecord{.kind = static_cast<uint32_t>(FileKind::kPipe), .pipe = pipe,
                                .path = "pipe:[99]"},
                     read_end, files));
  check(writer.Write(FdRecord{.fd = 3, .fd_flags = 1, .file = read_end}, 0, files));
  ObjectRef deleted = reg.NewRef();
  const char contents[] = "contents of a deleted file";
  iovec file_bulk{const_cast<char*>(contents), sizeof(contents) - 1};
  check(writer.Write(FileRecord{.kind = static_cast<uint32_t>(FileKind::kDeletedRegular),
                                .flags = 2, .mode = 0100600, .offset = 5,
                                .size = sizeof(contents) - 1, .path = "/tmp/gone (deleted)"},
                     deleted, files, absl::MakeConstSpan(&file_bulk, 1)));
  check(writer.Write(FdRecord{.fd = 4, .fd_flags = 0, .file = deleted}, 0, files));

  ObjectRef mm = reg.NewRef();
  MemoryMapRecord mmr;
  mmr.start_code = 0x400000;
  mmr.end_code = 0x401000;
  mmr.start_brk = mmr.brk = 0x500000;
  mmr.auxv = {6, 4096, 0, 0};
  mmr.exe_path = "/usr/bin/sample";
  check(writer.Write(mmr, mm, p));
  check(writer.Write(VmaRecord{.start = kSamplePagesAt,
                               .end = kSamplePagesAt + kSamplePages * 4096, .prot = 3,
                               .flags = 0x22, .kind = 0, .name = ""},
                     reg.NewRef(), mm));
  check(writer.Write(VmaRecord{.start = 0x7fff0000, .end = 0x7fff2000, .prot = 5, .flags = 2,
                               .kind = static_cast<uint32_t>(VmaKind::kVdso), .name = "[vdso]"},
                     reg.NewRef(), mm));

  std::vector<uint8_t> pages(kSamplePages * 4096);
  for (int i = 0; i < kSamplePages; ++i) {
    if (i != 3) memset(&pages[i * 4096], i + 1, 4096);
  }
  PageArray array(&ctx, mm);
  check(array.Add(kSamplePagesAt, pages.data(), kSamplePages));
  check(array.Flush());
  check(writer.Finish());
  return image;
}

}  // namespace crlib::testing
