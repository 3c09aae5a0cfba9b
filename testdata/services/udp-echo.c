/* A UDP echo server for the published-port tests: busybox has no UDP server applet.
 * The tests compile it statically (gcc -static) and bind-mount it into a busybox container.
 *   udp-echo PORT   answers every datagram on 0.0.0.0:PORT with "echo:" + the datagram. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp-echo PORT\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("udp-echo: bind");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    char buf[65536];
    memcpy(buf, "echo:", 5);
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&from, &len);
        if (n < 0)
            continue;
        sendto(fd, buf, (size_t)n + 5, 0, (struct sockaddr *)&from, len);
    }
}
