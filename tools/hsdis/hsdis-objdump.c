/*
 * A HotSpot disassembler plugin (hsdis) that hands each compiled method's code to binutils' objdump, so that
 * -XX:+PrintAssembly works on a machine without a prebuilt hsdis. For reading what C2 made of a kernel: bounds
 * checks left in a loop, spilled vector registers, loads hoisted ahead of their uses.
 *
 *   gcc -O2 -shared -fPIC -o hsdis-amd64.so tools/hsdis/hsdis-objdump.c
 *   LD_LIBRARY_PATH=$PWD MOE_JAVA_OPTS="..." java -XX:+UnlockDiagnosticVMOptions \
 *       '-XX:CompileCommand=print,dev.moe.core.kernels.VectorPanelKernels::bf16Rows8' -jar ... bench kernel ...
 *
 * x86-64 only (objdump -mi386:x86-64); needs objdump on the PATH. A development tool: nothing in the build uses it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *(*event_callback_t)(void *env, const char *event, void *arg);
typedef int (*printf_callback_t)(void *env, const char *format, ...);

/* The entry point HotSpot looks up: decode [start_va, end_va), whose bytes are buffer[0, length). */
void *decode_instructions_virtual(uintptr_t start_va, uintptr_t end_va, unsigned char *buffer, uintptr_t length,
                                  event_callback_t event_callback, void *event_stream,
                                  printf_callback_t printf_callback, void *printf_stream,
                                  const char *options, int newline) {
    (void) options;
    char path[] = "/tmp/hsdis-objdump-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        printf_callback(printf_stream, "hsdis-objdump: cannot create a temporary file\n");
        return NULL;
    }
    ssize_t written = write(fd, buffer, length);
    close(fd);
    if (written != (ssize_t) length) {
        unlink(path);
        printf_callback(printf_stream, "hsdis-objdump: cannot write %s\n", path);
        return NULL;
    }
    char command[512];
    snprintf(command, sizeof command,
             "objdump -D -b binary -mi386:x86-64 -M intel --no-show-raw-insn --adjust-vma=0x%lx %s",
             (unsigned long) start_va, path);
    FILE *objdump = popen(command, "r");
    char line[1024];
    while (objdump != NULL && fgets(line, sizeof line, objdump) != NULL) {
        /* instruction lines look like "   7f..a0:\tmov    eax,0x1" */
        char *colon = strchr(line, ':');
        if (colon == NULL || line[0] != ' ') {
            continue;
        }
        uintptr_t address = (uintptr_t) strtoull(line, NULL, 16);
        if (address < start_va || address >= end_va) {
            continue;
        }
        char *text = colon + 1;
        while (*text == ' ' || *text == '\t') {
            text++;
        }
        text[strcspn(text, "\n")] = '\0';
        if (event_callback != NULL) {
            event_callback(event_stream, "insn", (void *) address);
        }
        printf_callback(printf_stream, "%s", text);
        if (event_callback != NULL) {
            event_callback(event_stream, "/insn", (void *) address);
        }
        if (newline) {
            printf_callback(printf_stream, "\n");
        }
    }
    if (objdump != NULL) {
        pclose(objdump);
    }
    unlink(path);
    return (void *) end_va;
}
