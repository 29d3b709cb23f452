// The numbers of the image's record types, and the references records
// use to name objects: what every family of records needs (core/records.h
// has the records themselves).
#ifndef CRLIB_CORE_RECORD_TYPES_H_
#define CRLIB_CORE_RECORD_TYPES_H_

#include <cstdint>

namespace crlib {

// Identifies an object within one image; 0 means "none".
using ObjectRef = uint64_t;

// Numbers are grouped in ranges by area and never reused.
enum class RecordType : uint32_t {
  kEnd = 0x0001,
  kFiller = 0x0002,
  kProcess = 0x0100,
  kThread = 0x0101,
  kSignalHandlers = 0x0102,
  kPendingSignals = 0x0103,
  kRlimits = 0x0104,
  kItimers = 0x0105,
  kProcessAttributes = 0x0106,
  kThreadAttributes = 0x0107,
  kPosixTimers = 0x0108,
  kSeccomp = 0x0109,
  kSchedule = 0x0110,
  kX86Registers = 0x0200,
  kXstate = 0x0201,
  kXstateComponent = 0x0202,
  kMemoryMap = 0x0300,
  kVma = 0x0301,
  kPages = 0x0302,
  kInode = 0x0303,
  kGuardRegions = 0x0310,
  kPageDrops = 0x0311,
  kStalePages = 0x0312,
  kChain = 0x0313,
  kFileTable = 0x0400,
  kFile = 0x0401,
  kFd = 0x0402,
  kPipe = 0x0403,
  kFileLock = 0x0404,
  kProcessDirs = 0x0405,
  kTty = 0x0410,
  kEventfd = 0x0420,
  kTimerfd = 0x0421,
  kSignalfd = 0x0422,
  kInotify = 0x0423,
  kEpoll = 0x0424,
  kSocket = 0x0430,
  kTcpConnection = 0x0431,
};

}  // namespace crlib

#endif  // CRLIB_CORE_RECORD_TYPES_H_
