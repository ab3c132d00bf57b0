// Who asked for a manual action, for the records that keep it (quarantine reasons, release
// and rewind entries, withdrawn suspects): one rule for every tool.

#if canImport(Glibc)
import Glibc
#endif

public enum Who {
    /// The person: $SUDO_USER, else $USER / $LOGNAME, else the uid's name, else "uid N".
    public static func current() -> String {
        for k in ["SUDO_USER", "USER", "LOGNAME"] {
            if let v = getenv(k), let s = String(validatingCString: v), !s.isEmpty { return s }
        }
        if let pw = getpwuid(getuid()), let n = pw.pointee.pw_name { return String(cString: n) }
        return "uid \(getuid())"
    }
}
